// Runs in the CRM page's main world just before tracker.js (the service worker injects prelude.js,
// tracker.js and postlude.js as one script, so no page script runs in between). The tracker reads its
// site key and collector from document.currentScript, as from its snippet's <script> tag: here that is
// the <script type="application/json" data-stepwatch-extension> element content.js put in the page (it
// never runs). postlude.js gives document.currentScript back, should the tracker not have read it.
;(function () {
  var tag = document.querySelector('script[data-stepwatch-extension]')
  if (!tag || window.stepwatch) return // already tracked: the CRM has the snippet itself
  tag.remove()
  // Read once, by the tracker's first line, and gone at that read: no page script sees it.
  Object.defineProperty(document, 'currentScript', {
    configurable: true,
    get: function () {
      delete document.currentScript
      return tag
    }
  })
  // The snippet's queueing stub: calls made before the tracker has its config wait in stepwatch.q.
  // Its queue exists from the start, so that a page (or a test) can tell the stub from the tracker,
  // which replaces it once it has its config, even before anything was queued.
  var stub = (window.stepwatch = function () {
    stub.q.push(arguments)
  })
  stub.q = []
  // The manager's identity, from content.js (a page element, or a signed identity from stepwatch).
  document.addEventListener('stepwatch-extension-identify', function (event) {
    try {
      var who = JSON.parse(event.detail)
      window.stepwatch('identify', who[0], who[1] || undefined)
    } catch (e) {}
  })
  // A JavaScript value the administrator named (window.crm.user.id): read, never evaluated, until the
  // CRM has set it, and again when it changes (another manager signs in to the CRM in this tab).
  var variable = tag.dataset.variable
  if (variable) {
    var last
    var read = function () {
      var value = variable.split('.').slice(1).reduce(function (object, name) {
        return object == null ? undefined : object[name]
      }, window)
      if ((typeof value == 'string' || typeof value == 'number') && String(value) && String(value) !== last) {
        last = String(value)
        window.stepwatch('identify', last)
        document.dispatchEvent(new CustomEvent('stepwatch-extension-identified', { detail: last })) // for the popup
      }
    }
    read()
    setInterval(read, 1000)
  }
})()
