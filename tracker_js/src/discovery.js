// Step discovery: a module the tracker imports only while the site's discovery is on (config.d).
// It counts the page views of paths that match no step, as patterns (identifiers replaced by
// clean(), the same as the tracker's), and sends only those counts: no time, no manager, no
// session, no page content. Built with rules.js into dist/discovery.js (build.js); the collector
// cleans every pattern again and refuses a report that holds anything else.

var here = new URL(import.meta.url) // /discovery.js?site=KEY on the collector
var site = here.searchParams.get('site')
var url = here.origin + '/v1/discovery'
var MAX_PATTERNS = 50 // in one report, as the collector allows
var config
var counts = {}
var patterns = 0
var last

// A page view: the path changed (a page load, or a single-page app's navigation seen by polling).
function look() {
  var path = location.pathname
  var pattern
  if (path == last) return
  last = path
  if (document.body?.dataset.stepwatchStep || match(path)) return
  pattern = path.replace(/[^/]+/g, clean).slice(0, 300)
  if (!counts[pattern]) patterns++
  counts[pattern] = Math.min(1000, (counts[pattern] || 0) + 1)
  if (patterns >= MAX_PATTERNS) send()
}

// Counts are handed to the browser and forgotten: a lost report loses a few page views, no more.
function send() {
  if (patterns) navigator.sendBeacon(url, JSON.stringify({ site: site, counts: counts }))
  counts = {}
  patterns = 0
}

fetch(here.origin + '/v1/config/' + site)
  .then(function (response) {
    return response.json()
  })
  .then(function (c) {
    if (!c.steps) return
    config = c
    look()
    setInterval(look, 1e3)
    setInterval(send, 6e4)
    addEventListener('pagehide', send)
    addEventListener('visibilitychange', function () {
      document.hidden && send()
    })
  })
  .catch(send) // any function will do: nothing reaches the page's console
