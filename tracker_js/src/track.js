// Sessions, steps, the public API and the page hooks. Loaded last: it starts the tracker.

var explicitStep

// hex(sha256(salt + ":" + customer)), or undefined when there is no customer.
function hash(customer) {
  return Promise.resolve(
    customer &&
      crypto.subtle.digest('SHA-256', new TextEncoder().encode(config.salt + ':' + customer)).then(function (digest) {
        return [...new Uint8Array(digest)]
          .map(function (b) {
            return (b + 256).toString(16).slice(1)
          })
          .join('')
      })
  )
}

// A session as stored in localStorage (s): i id, c customer hash, l last activity (epoch ms),
// q quiet, a attributes (only names and values the process declares). Only sessions with a customer have start and end events; the implicit ones (c == '')
// and the quiet ones (what follows a declared end, until another customer shows) do not.

// Ends the stored session at `at` and starts one for `customer` (none if 0) in its place.
function switchTo(customer, outcome, at, quiet, attributes) {
  var state = load()
  var s = state.s
  var next = (state.s = customer !== 0 && { i: crypto.randomUUID(), c: customer || '', l: at, q: quiet, a: attributes })
  save(state)
  ;[s, next].forEach(function (s, starts) {
    if (s?.c && !s.q) put({ type: 'session', event_id: crypto.randomUUID(), action: starts ? 'start' : 'end', session_id: s.i, customer: s.c, at: at, outcome: (!starts && outcome) || '', attributes: s.a, manager: manager })
  })
  return next
}

// The stored session, or 0 after ending it (and the open visit) once session_timeout_ms has
// passed since the latest activity: both end at that moment, not when the tracker notices.
function current(t) {
  var s = load().s
  var end = s?.l + config.session_timeout_ms
  if (end < origin + t) {
    close(Math.max(lastTick, end - origin))
    s = switchTo(0, 'timeout', end)
  }
  return s
}

// Which step is on screen: an explicit stepwatch('step') call, else <body data-stepwatch-step>,
// else the URL rules on the path. A visit lasts as long as its step and customer stay the same.
function route() {
  var t = now()
  var m = match(loc.pathname) || { _path: loc.pathname.replace(/[^/]+/g, clean) }
  var step = explicitStep || doc.body.dataset.stepwatchStep || m._step
  var customer = m._customer
  var v
  current(t)
  if (visit?.step != step || visitCustomer != customer) {
    close(t)
    lastTick = lastInput = t
    visitCustomer = customer
    if (step) {
      visit = v = {
        type: 'visit',
        visit_id: crypto.randomUUID(),
        seq: 0,
        step: step,
        path: m._path.slice(0, 512),
        started_at: origin + t,
        active_ms: 0,
        idle_ms: 0,
        hidden_ms: 0,
        manager: manager
      }
      // Another customer on screen: the session of the previous one ends, one for this one starts.
      hash(customer).then(
        guard(function (h) {
          var s = load().s
          if (!s || (h && s.c != h)) s = switchTo(h, '', v.started_at)
          v.session_id = s.i
          v.customer = s.c
        })
      )
    }
  }
}

// Starting the session of the customer already being served is a no-op (its attributes too).
// Ending one leaves a quiet session for the same customer: staying on their page does not start
// another. Attributes the process does not declare (config.attributes) are dropped.
function session(action, options = {}) {
  var attributes = {}
  for (var name in options.attributes) if (config.attributes?.[name]?.includes?.(options.attributes[name])) attributes[name] = options.attributes[name]
  return hash(options.customer).then(
    guard(function (h) {
      var t = now()
      var s = current(t)
      var start = action == 'start'
      if (start && s?.c == h && !s.q) return
      close(t)
      switchTo(start ? h : s.c, options.outcome, origin + t, !start, attributes)
      route()
    })
  )
}

function command(name, a, b) {
  if (name == 'identify') {
    manager = a
    token = b
    flush()
  }
  if (name == 'step') {
    explicitStep = a
    route()
  }
  return name == 'session' && session(a, b)
}

function start(c) {
  var queued = stepwatch.q || []
  var listen = addEventListener
  var safeRoute = guard(route)
  var input = guard(onInput)
  config = c
  hidden = doc.hidden
  lastTick = lastInput = now()
  stepwatch = guard(command)
  ;['pointerdown', 'pointermove', 'keydown', 'scroll'].forEach(function (name) {
    listen(name, input, 1) // capture: see the input of every element
  })
  ;['pushState', 'replaceState'].forEach((name) => {
    var original = history[name]
    history[name] = function () {
      original.apply(this, arguments)
      safeRoute()
    }
  })
  listen('popstate', safeRoute)
  // Back from the back/forward cache: pagehide ended the visit, a new one starts.
  listen('pageshow', safeRoute)
  listen('visibilitychange', guard(onVisibility))
  listen(
    'pagehide',
    guard(function () {
      close(now())
      flush(1)
    })
  )
  setInterval(guard(tick), c.checkpoint_ms)
  setInterval(flush, FLUSH_MS)
  // While the site's discovery is on, config.d is the path of a module that counts the pages no step
  // matches (src/discovery.js); a classic script may import() one.
  c.d && import(base + c.d)
  // Calls made before the script loaded, in order; the first visit waits for a declared session.
  Promise.all(
    queued.map(function (args) {
      return stepwatch(...args)
    })
  ).then(safeRoute)
  // Last: it throws if the body is still being parsed (pageshow routes again once it is).
  new MutationObserver(safeRoute).observe(doc.body, { attributeFilter: ['data-stepwatch-step'] })
}

loadConfig(start) // (an error in start() rejects the promise, which loadConfig catches)
