// The service worker: which configuration runs, where the content script is registered (exactly the
// configured CRM origins the extension holds a host permission for), injecting the tracker into those
// pages' main world, and the signed identity from stepwatch's sign-in, renewed before it expires.
'use strict'
importScripts('config.js')

var SCRIPT_ID = 'stepwatch-crm'
var RENEW_ALARM = 'stepwatch-renew-identity'

async function current() {
  var managed = {}
  try {
    managed = await chrome.storage.managed.get(null)
  } catch (e) {} // no policy support (or none set): the pasted link decides
  var local = await chrome.storage.local.get('pasted')
  return StepwatchConfig.resolve(managed, local.pasted)
}

// The CRM origins of the configuration the extension may run on (the user or the policy granted them).
async function allowedOrigins(config) {
  var allowed = []
  for (var origin of config.origins) {
    if (await chrome.permissions.contains({ origins: StepwatchConfig.matches([origin]) })) allowed.push(origin)
  }
  return allowed
}

// One registered content script, for exactly the allowed origins; none without a configuration.
async function register() {
  var resolved = await current()
  var registered = await chrome.scripting.getRegisteredContentScripts({ ids: [SCRIPT_ID] })
  if (registered.length) await chrome.scripting.unregisterContentScripts({ ids: [SCRIPT_ID] })
  var origins = resolved.config ? await allowedOrigins(resolved.config) : []
  if (origins.length) {
    await chrome.scripting.registerContentScripts([
      { id: SCRIPT_ID, matches: StepwatchConfig.matches(origins), js: ['config.js', 'rules.js', 'discovery.js', 'content.js'], runAt: 'document_start', allFrames: false, persistAcrossSessions: false }
    ])
  }
  return { source: resolved.source, config: resolved.config, problems: resolved.problems, allowed: origins }
}

var ready = register()
function refresh() {
  ready = ready.catch(function () {}).then(register)
  return ready
}
chrome.runtime.onInstalled.addListener(refresh)
chrome.runtime.onStartup.addListener(refresh)
chrome.storage.onChanged.addListener(function (changes, area) {
  if (area == 'managed' || (area == 'local' && changes.pasted)) refresh()
})
chrome.permissions.onAdded.addListener(refresh)
chrome.permissions.onRemoved.addListener(refresh)

// --- signed identity by signing in to stepwatch ---------------------------------------------------

// The stored token while it is not due for renewal; else a new one from stepwatch (with its login
// cookie); {signedOut: true} when stepwatch answers that nobody is signed in (401) or not a manager (403).
async function identity(config, fresh) {
  var stored = (await chrome.storage.local.get('identity')).identity
  var now = Date.now() / 1000
  if (!fresh && stored && stored.site == config.site && stored.base == config.identity.signin && now < stored.renew_after) return stored
  var url = config.identity.signin + '/api/v1/me/identity-token?site=' + encodeURIComponent(config.site)
  try {
    var response = await fetch(url, { credentials: 'include', cache: 'no-store' })
    if (response.status == 401 || response.status == 403) {
      await chrome.storage.local.remove('identity')
      return { signedOut: true, refused: response.status == 403 }
    }
    if (!response.ok) throw new Error(String(response.status))
    var token = await response.json()
    token.base = config.identity.signin
    await chrome.storage.local.set({ identity: token })
    chrome.alarms.create(RENEW_ALARM, { when: Math.max(Date.now() + 60e3, token.renew_after * 1000) })
    return token
  } catch (e) {
    // stepwatch unreachable: a token still valid is better than none
    return stored && stored.site == config.site && now < stored.expires_at ? stored : { unreachable: true }
  }
}

chrome.alarms.onAlarm.addListener(async function (alarm) {
  if (alarm.name != RENEW_ALARM) return
  var resolved = await ready
  if (resolved.config && resolved.config.identity.signin) await identity(resolved.config, true)
})

// --- messages from content.js, the popup and the options page -------------------------------------

async function answer(message, sender) {
  var resolved = await ready
  var config = resolved.config
  if (message.type == 'state') return resolved
  if (message.type == 'refresh') return refresh()
  if (!config) return null
  // From a page: only one of the configured origins gets anything (the content script is registered
  // for nowhere else; this is the second lock).
  var fromPage = sender.tab && sender.origin && sender.origin != location.origin
  if (fromPage && (config.origins.indexOf(sender.origin) < 0 || sender.frameId !== 0)) return null
  if (message.type == 'config') return config
  if (message.type == 'inject' && fromPage) {
    await chrome.scripting.executeScript({
      target: { tabId: sender.tab.id, frameIds: [sender.frameId] },
      world: 'MAIN',
      injectImmediately: true,
      files: ['prelude.js', 'tracker.js', 'postlude.js']
    })
    return true
  }
  if (message.type == 'identity' && config.identity.signin) return identity(config, message.fresh)
  return null
}

chrome.runtime.onMessage.addListener(function (message, sender, reply) {
  answer(message, sender).then(reply, function (error) {
    reply({ error: String(error) })
  })
  return true // the reply comes later
})
