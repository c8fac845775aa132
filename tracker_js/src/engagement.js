// Time accounting for the open visit. Nothing is sampled: every span between two moments the
// tracker looks (input after a pause, visibility change, checkpoint, end of the visit) is split
// exactly into active, idle and hidden time.

var visit // the step on screen, as the event its reports are copies of, or 0
var visitCustomer // as captured from the URL: kept out of the visit so it can never be sent
var lastInput // performance.now() of the latest user input; opening a visit counts as input
var lastTick // time up to which the open visit has been accounted
var hidden

// Visible time is active up to idle_ms after the latest input, idle after that.
function account(t) {
  var span = t - lastTick
  var active = Math.max(0, Math.min(t, lastInput + config.idle_ms) - lastTick)
  if (visit) {
    if (hidden) visit.hidden_ms += span
    else {
      visit.active_ms += active
      visit.idle_ms += span - active
    }
  }
  lastTick = t
}

// Kept O(1) for mousemove storms: only input after an idle pause does more than store a time.
function onInput() {
  var t = now()
  if (t - lastInput > config.idle_ms) wake(t)
  lastInput = t
}

// Each report carries the visit's totals so far; a visit whose session is still being worked
// out (its customer is being hashed) has nothing to report yet.
function report() {
  if (visit.session_id) {
    put({ ...visit })
    visit.seq++
  }
}

function close(t) {
  if (visit) {
    account(t)
    visit.final = true
    report()
    visit = 0
  }
}

// Called on every checkpoint, and when the tab is hidden.
function tick() {
  var t = now()
  current(t)
  account(t)
  if (visit) report()
}

// Input after a pause, or the tab shown again.
function wake(t) {
  current(t)
  account(t)
  lastInput = t
  visit || route()
}

// The span up to now is accounted before `hidden` changes: it was spent in the previous state.
function onVisibility() {
  if (doc.hidden) {
    tick()
    flush()
  } else wake(now())
  hidden = doc.hidden
}
