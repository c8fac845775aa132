// Where the tracker was loaded from, the site's config, local storage, and which step a URL is.
// The build wraps src/*.js (in the order of build.js) in one function: these names are private.

var VERSION = '1.2.1'
var doc = document
var loc = location
var perf = performance
var origin = perf.timeOrigin // epoch ms at performance.now() == 0 (epoch = origin + t), in whole ms
origin -= origin % 1 // (7 bytes fewer than Math.round once gzipped: the budget is that tight)
var script = doc.currentScript // set while a classic script (async or not) first runs, which is when this runs
var site = script.dataset.site
var base = script.dataset.api || new URL(script.src).origin
// The state sits in localStorage under the site key: q queue, d dropped events, s session.
// Without localStorage (blocked) it lives here: the page is still measured, the queue is lost
// on reload.
var memory = { q: [], d: 0 }
var config

// Entry points run in the host page's event loop: an error of ours must never reach it.
function guard(fn) {
  return function () {
    try {
      return fn.apply(this, arguments)
    } catch (e) {}
  }
}

// performance.now() is monotonic; wall-clock time is origin + now(), never read from Date.
// Whole milliseconds, so that the active, idle and hidden parts of a visit add up exactly.
function now() {
  return perf.now() | 0
}

function load() {
  try {
    memory = JSON.parse(localStorage[site])
  } catch (e) {}
  return memory
}

// (Without localStorage, load() returns `memory` itself, which callers change in place.)
function save(state) {
  try {
    localStorage[site] = JSON.stringify(state)
  } catch (e) {}
}

function loadConfig(ready) {
  fetch(base + '/v1/config/' + site)
    .then(function (response) {
      return response.json()
    })
    .then(function (config) {
      config.steps && ready(config)
    })
    .catch(guard) // any function will do: an unreachable collector must not reach the page's console
}
