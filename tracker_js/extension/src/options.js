// The options page: which configuration runs and from where, the setup link to paste, and the host
// permissions it needs (asked for on the click that saves the link, as the browser requires).
'use strict'

function describeIdentity(identity) {
  if (identity.signin) return say('identitySignin', [host(identity.signin)])
  if (identity.variable) return say('identityVariable', [identity.variable])
  return say('identityElement', [identity.element])
}

async function show() {
  var state = await chrome.runtime.sendMessage({ type: 'state' })
  var now = document.getElementById('now')
  var parts = []
  var config = state.config
  var policy = state.source == 'policy'
  parts.push(el('p', { id: 'source' }, say(policy ? 'sourcePolicy' : state.source == 'link' ? 'sourceLink' : 'sourceNone')))
  if (state.problems.length && state.source) {
    var list = el('ul', { class: 'error', id: 'problems' })
    state.problems.forEach(function (p) {
      list.append(el('li', {}, say(p)))
    })
    parts.push(list)
  }
  if (config) {
    var dl = el('dl', { class: 'facts' })
    var origins = el('ul', { class: 'plain' })
    config.origins.forEach(function (o) {
      var allowed = state.allowed.indexOf(o) >= 0
      origins.append(el('li', {}, host(o) + ' — ', el('span', { class: allowed ? 'ok' : 'warn' }, say(allowed ? 'allowed' : 'notAllowedShort'))))
    })
    dl.append(el('dt', {}, say('runsOn')), el('dd', {}, origins))
    dl.append(el('dt', {}, say('identityFrom')), el('dd', {}, describeIdentity(config.identity)))
    dl.append(el('dt', {}, say('sendsTo')), el('dd', {}, host(config.collector)))
    parts.push(dl)
    if (state.allowed.length < config.origins.length) {
      var allow = el('button', { type: 'button', id: 'allow' }, say('allow'))
      allow.addEventListener('click', function () {
        chrome.permissions.request({ origins: StepwatchConfig.permissionOrigins(config) }).then(show)
      })
      parts.push(el('p', {}, allow))
    }
  }
  now.replaceChildren(...parts)
  document.getElementById('link').disabled = document.getElementById('save').disabled = policy
  if (policy) document.getElementById('link').placeholder = say('linkPolicy')
}

document.addEventListener('DOMContentLoaded', function () {
  show()
  document.getElementById('link-form').addEventListener('submit', function (event) {
    event.preventDefault()
    var error = document.getElementById('link-error')
    var raw = StepwatchConfig.fromLink(document.getElementById('link').value)
    var checked = StepwatchConfig.check(raw)
    if (!raw || !checked.config) {
      error.hidden = false
      error.textContent = say(raw ? checked.problems[0] : 'linkBad')
      return
    }
    error.hidden = true
    // Asked first, while the click still counts as the user's: the browser shows its own question.
    chrome.permissions
      .request({ origins: StepwatchConfig.permissionOrigins(checked.config) })
      .catch(function () {})
      .then(function () {
        return chrome.storage.local.set({ pasted: raw })
      })
      .then(function () {
        return chrome.runtime.sendMessage({ type: 'refresh' })
      })
      .then(show)
  })
})
