// The content script, registered only for the configured CRM origins (background.js). It puts the
// tracker into the page (through the service worker), hands it the manager's identity, counts the
// pages no step matches while the site's step discovery is on (discovery.js), and keeps for the popup
// what is being measured: the step on screen and whether the time counts as active, idle or hidden.
// It reads nothing of the page but the one element an administrator named for the identity.
'use strict'
// Below the collector's URL, where the extension's tracker talks to it (collector.EXTENSION_BASE): the
// same events; a config without step discovery, whose module the page would load from the collector.
var EXTENSION_BASE = '/v1/extension'
;(async function () {
  var send = function (message) {
    return chrome.runtime.sendMessage(message)
  }
  var config = await send({ type: 'config' })
  if (!config || config.origins.indexOf(location.origin) < 0) return

  var tag = document.createElement('script')
  tag.type = 'application/json' // never runs: it only carries what the tracker reads from its script tag
  tag.dataset.stepwatchExtension = ''
  tag.dataset.site = config.site
  tag.dataset.api = config.collector + EXTENSION_BASE
  if (config.identity.variable) tag.dataset.variable = config.identity.variable
  document.documentElement.appendChild(tag)
  if (!(await send({ type: 'inject' }))) return
  // prelude.js took the tag for the tracker; left in place, the page has the snippet and its own tracker
  var ours = !tag.isConnected

  var who = { manager: null, name: null, signedOut: false, unreachable: false }
  function identify(manager, token) {
    who.manager = manager
    document.dispatchEvent(new CustomEvent('stepwatch-extension-identify', { detail: JSON.stringify([manager, token || null]) }))
  }
  document.addEventListener('stepwatch-extension-identified', function (event) {
    who.manager = String(event.detail)
  })

  var id = config.identity
  if (id.element) {
    var readElement = function () {
      var element = document.querySelector(id.element)
      var value = element && (id.attribute ? element.getAttribute(id.attribute) : element.textContent)
      value = value && value.trim()
      if (value && value != who.manager) identify(value)
    }
    readElement()
    setInterval(readElement, 1000)
  }
  if (id.signin) {
    // The page may stay open for days: it asks the service worker again at its token's renew_after (the
    // service worker then gets a new one from stepwatch), or in a minute when the answer brought no token
    // (signed in since?) or one already due (stepwatch unreachable).
    var held = null // the token the tracker has
    var askAt = 0
    var signIn = async function () {
      askAt = Infinity // one question at a time
      var token = await send({ type: 'identity' })
      who.signedOut = !!(token && token.signedOut)
      who.unreachable = !!(token && token.unreachable)
      if (token && token.token) {
        who.name = token.name
        if (!held || held.token != token.token) identify(token.manager, token.token)
        held = token
      }
      var renewAt = token && token.token ? token.renew_after * 1000 : 0
      askAt = renewAt > Date.now() ? renewAt : Date.now() + 60e3
    }
    // Checked against the clock every few seconds rather than by one timer set hours ahead: a page's
    // timers stand still while the computer sleeps, so such a timer could fire long after the token
    // expired. An expired token is taken back from the tracker, which then keeps its events queued until
    // a renewed one comes, rather than have the collector refuse them.
    setInterval(function () {
      if (held && Date.now() >= held.expires_at * 1000) {
        identify(held.manager, null)
        held = null
      }
      if (Date.now() >= askAt) signIn()
    }, 5e3)
    signIn()
  }

  // --- what the popup shows, and step discovery ---------------------------------------------------
  var steps = []
  var idleMs = 30000
  var discovering = false
  // The site's own tracker config (not the extension tracker's): its `d` says whether discovery is on.
  // Only read here: the module it names is never loaded.
  fetch(config.collector + '/v1/config/' + encodeURIComponent(config.site))
    .then(function (response) {
      return response.json()
    })
    .then(function (site) {
      steps = site.steps || []
      idleMs = site.idle_ms || idleMs
      discovering = ours && discover(config.collector, config.site, site)
    })
    .catch(function () {})

  var lastInput = Date.now()
  ;['pointerdown', 'pointermove', 'keydown', 'scroll'].forEach(function (name) {
    addEventListener(
      name,
      function () {
        lastInput = Date.now()
      },
      { capture: true, passive: true }
    )
  })
  var shown = { step: null, since: Date.now(), active_ms: 0, idle_ms: 0, hidden_ms: 0, state: 'active' }
  var lastTick = Date.now()
  function tick() {
    var now = Date.now()
    var step = (document.body && document.body.dataset.stepwatchStep) || StepwatchConfig.stepOf(steps, location.pathname)
    if (step != shown.step) shown = { step: step, since: now, active_ms: 0, idle_ms: 0, hidden_ms: 0 }
    else shown[shown.state + '_ms'] += now - lastTick
    shown.state = document.hidden ? 'hidden' : now - lastInput >= idleMs ? 'idle' : 'active'
    lastTick = now
  }
  setInterval(tick, 1000)
  document.addEventListener('visibilitychange', tick)

  chrome.runtime.onMessage.addListener(function (message, sender, reply) {
    if (message.type != 'status') return
    tick()
    reply({
      origin: location.origin,
      step: shown.step,
      title: shown.step && (config.titles[shown.step] || shown.step),
      state: shown.state,
      active_ms: shown.active_ms,
      idle_ms: shown.idle_ms,
      hidden_ms: shown.hidden_ms,
      manager: who.manager,
      name: who.name,
      signedOut: who.signedOut,
      unreachable: who.unreachable,
      discovering: discovering
    })
  })
})()
