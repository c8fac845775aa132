// The extension's configuration: one JSON object, from the enterprise policy (chrome.storage.managed,
// described by schema.json) or from a setup link the user pasted (<stepwatch>/extension/setup#<base64url
// JSON>). The policy wins. Plain functions, loaded by the service worker, the options page and the popup,
// and by node in tests/browser_extension/test_config.py.
//
//   { "collector": "https://stepwatch.example",        where the tracker sends (its data-api)
//     "site": "pk_...",                                the site's public key (its data-site)
//     "origins": ["https://crm.example.com"],          the only pages it runs on
//     "identity": {"element": "[data-manager-id]"}     the manager's id: the text of a page element,
//               | {"variable": "window.crm.user.id"}     a JavaScript value of the page,
//               | {"signin": "https://stepwatch.example"}  or a signed identity from stepwatch's sign-in
//     "stepwatch": "https://stepwatch.example",        optional: where "My figures" is (default: collector)
//     "titles": {"offer": "Offer"} }                   optional: step titles the popup shows
'use strict'

var StepwatchConfig = (function () {
  var VARIABLE = /^window(\.[A-Za-z_$][\w$]*){1,10}$/

  // "https://crm.example.com:8443" as the browser writes an origin; null for anything else (a path,
  // a query, a wildcard, another scheme).
  function origin(text) {
    try {
      var url = new URL(text)
      var plain = /^([a-z0-9-]+\.)*[a-z0-9-]+$|^\[[0-9a-f:.]+\]$/.test(url.hostname) // no wildcard, no odd host
      if (plain && /^https?:$/.test(url.protocol) && url.origin + (text.endsWith('/') ? '/' : '') == text) return url.origin
    } catch (e) {}
    return null
  }

  // The configuration, cleaned, with the problems found (keys of _locales' messages); config is null when
  // it cannot run at all.
  function check(raw) {
    var problems = []
    if (!raw || typeof raw != 'object') return { config: null, problems: ['configEmpty'] }
    var collector = typeof raw.collector == 'string' && origin(raw.collector.replace(/\/+$/, ''))
    var site = typeof raw.site == 'string' && /^[\w-]{1,100}$/.test(raw.site) && raw.site
    var origins = (Array.isArray(raw.origins) ? raw.origins : []).map(origin).filter(Boolean)
    var id = raw.identity || {}
    var identity = null
    if (typeof id.signin == 'string' && origin(id.signin.replace(/\/+$/, ''))) identity = { signin: origin(id.signin.replace(/\/+$/, '')) }
    else if (typeof id.variable == 'string' && VARIABLE.test(id.variable)) identity = { variable: id.variable }
    else if (typeof id.element == 'string' && id.element.trim() && id.element.length <= 200) identity = { element: id.element.trim() }
    if (typeof id.attribute == 'string' && identity && identity.element && /^[\w-]{1,60}$/.test(id.attribute)) identity.attribute = id.attribute
    if (!collector) problems.push('configCollector')
    if (!site) problems.push('configSite')
    if (!origins.length) problems.push('configOrigins')
    if (!identity) problems.push('configIdentity')
    if (problems.length) return { config: null, problems: problems }
    var titles = {}
    for (var key in raw.titles || {}) if (typeof raw.titles[key] == 'string') titles[key] = raw.titles[key].slice(0, 200)
    var stepwatch = (typeof raw.stepwatch == 'string' && origin(raw.stepwatch.replace(/\/+$/, ''))) || (identity.signin) || collector
    return {
      config: { collector: collector, site: site, origins: origins, identity: identity, stepwatch: stepwatch, titles: titles },
      problems: []
    }
  }

  // The configuration a setup link carries, or null.
  function fromLink(link) {
    try {
      var url = new URL(String(link).trim())
      if (!/\/extension\/setup$/.test(url.pathname) || url.hash.length < 2) return null
      var packed = url.hash.slice(1).replace(/-/g, '+').replace(/_/g, '/')
      var bytes = Uint8Array.from(atob(packed + '='.repeat((4 - (packed.length % 4)) % 4)), function (c) {
        return c.charCodeAt(0)
      })
      return JSON.parse(new TextDecoder().decode(bytes))
    } catch (e) {
      return null
    }
  }

  // Which configuration runs: the policy's when it sets one (even a broken one: an administrator's
  // mistake is reported, not quietly replaced by what a user pasted), else the pasted link's.
  function resolve(managed, pasted) {
    if (managed && Object.keys(managed).length) return Object.assign({ source: 'policy' }, check(managed))
    if (pasted) return Object.assign({ source: 'link' }, check(pasted))
    return { source: null, config: null, problems: ['configNone'] }
  }

  // Match patterns for the host permissions and content scripts: exactly these origins (port included).
  function matches(origins) {
    return origins.map(function (o) {
      return o + '/*'
    })
  }

  // Every origin the extension needs a host permission for: the CRM's, and stepwatch's for signing in.
  function permissionOrigins(config) {
    var all = config.origins.slice()
    if (config.identity.signin && all.indexOf(config.identity.signin) < 0) all.push(config.identity.signin)
    return matches(all)
  }

  // The step a path is by the site's URL rules (the tracker's own rule: each `*` or `{name}` is one
  // non-empty segment, first match in order, the rest of a pattern a regular expression as in
  // tracker_js/src/rules.js), for the popup.
  function stepOf(steps, path) {
    var found = null
    ;(steps || []).some(function (step) {
      return (step.patterns || []).some(function (pattern) {
        return RegExp('^' + pattern.replace(/\*|{\w+}/g, '([^/]+)') + '$').test(path) && (found = step.key)
      })
    })
    return found
  }

  return { check: check, fromLink: fromLink, resolve: resolve, matches: matches, permissionOrigins: permissionOrigins, origin: origin, stepOf: stepOf }
})()

if (typeof module == 'object') module.exports = StepwatchConfig
