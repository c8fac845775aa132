// The outgoing queue: kept in localStorage until the collector confirms it, sent in batches,
// retried with backoff, beaconed when the page goes away. Resending is safe: the collector
// keeps one row per visit_id + seq and per event_id. Queued events never change, so a sent
// one is recognised by its JSON.

var MAX_QUEUE = 200
var url = base + '/v1/events'
var FLUSH_MS = 2e3
var BATCH = 40 // events of at most 1.5 KB: a beacon or keepalive body must stay under 64 KiB
var manager
var token
var failures = 0
var retryAt = 0

// Only the latest report of a visit is worth keeping: each one carries the visit's totals so far.
// Queuing is also when the session's last activity is recorded.
function put(event) {
  var state = load()
  event.process = config.process
  event.tracker = VERSION
  state.q = state.q.filter(function (old) {
    return !event.visit_id || old.visit_id != event.visit_id
  })
  if (state.q.push(event) > MAX_QUEUE) {
    state.q.shift()
    state.d++
  }
  if (state.s) state.s.l = Math.max(state.s.l, origin + lastInput)
  save(state)
}

// An event carries the manager the page named when it was made (a visit's reports: when the visit
// began), so what another page sends again is still theirs. One made before the page said who it
// is gets the manager when it is sent.
function body(events) {
  return JSON.stringify({
    site: site,
    identity: token,
    events: events.map(function (event) {
      return { ...event, manager: event.manager || manager }
    })
  })
}

// Nothing leaves before the page says who the manager is (and, where required, signs it).
// Called every 2 s (FLUSH_MS): a failed send is retried by the first call after retryAt.
var flush = guard(function (unloading) {
  var queue = load().q
  var events = queue.slice(0, BATCH)
  if (!manager || (config.require_identity && !token) || !events.length) return
  if (unloading) {
    // No answer will be read: everything stays queued, and the next page load sends again
    // whatever was not confirmed by then.
    while (queue.length && navigator.sendBeacon(url, body(queue.splice(0, BATCH))));
    return
  }
  if (now() < retryAt) return
  retryAt = 1 / 0 // one request at a time: no other send until this one is answered
  fetch(url, { method: 'POST', body: body(events) })
    .then(function (response) {
      var status = response.status
      var sent = events.map(JSON.stringify) // (extra map arguments are ignored by stringify)
      var state = load()
      if (/^(5|408|429)/.test(status)) throw response
      // Accepted, or refused for good (other 4xx, counted as dropped): never sent again.
      state.q = state.q.filter(function (event) {
        return !sent.includes(JSON.stringify(event))
      })
      state.d += status > 299 && events.length
      save(state)
      retryAt = failures = 0
    })
    .catch(function (response) {
      // Exponential backoff, jittered, from 0.5-1 s up to 2-4 min; Retry-After (seconds) wins when longer.
      retryAt = now() + Math.max(~~response.headers?.get('Retry-After') * 1e3, ((1 + Math.random()) * 500) << Math.min(failures++, 8))
    })
})
