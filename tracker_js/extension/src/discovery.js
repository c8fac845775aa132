// Step discovery on the pages the extension measures: while the site's discovery is on, count the page
// views of paths that match no step, as patterns, and send only those counts, exactly as the snippet's
// discovery module (tracker_js/src/discovery.js) does. It cannot be that module: the snippet's tracker
// imports it from the collector, and an extension runs no code it does not carry. So the content script
// runs this copy in the extension's own world, with the tracker's rules.js (copied unchanged by the
// build) to match and clean paths: no time, no manager, no session, no page content.
'use strict'

var config // the site's tracker config: rules.js's match() reads its steps

// collector: where the report goes; site: the site's key; siteConfig: its tracker config, whose `d`
// says discovery is on. Whether it counts (for the popup).
function discover(collector, site, siteConfig) {
  if (!siteConfig.d || !siteConfig.steps) return false
  config = siteConfig
  var url = collector + '/v1/discovery'
  var MAX_PATTERNS = 50 // in one report, as the collector allows
  var counts = {}
  var patterns = 0
  var last

  function send() {
    if (patterns) navigator.sendBeacon(url, JSON.stringify({ site: site, counts: counts }))
    counts = {}
    patterns = 0
  }

  // A page view: the path changed (a page load, or a single-page app's navigation seen by polling).
  function look() {
    var path = location.pathname
    if (path == last) return
    last = path
    if ((document.body && document.body.dataset.stepwatchStep) || match(path)) return
    var pattern = path.replace(/[^/]+/g, clean).slice(0, 300)
    if (!counts[pattern]) patterns++
    counts[pattern] = Math.min(1000, (counts[pattern] || 0) + 1)
    if (patterns >= MAX_PATTERNS) send()
  }

  look()
  setInterval(look, 1e3)
  setInterval(send, 6e4)
  addEventListener('pagehide', send)
  document.addEventListener('visibilitychange', function () {
    if (document.hidden) send()
  })
  return true
}
