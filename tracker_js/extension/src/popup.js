// The popup: what is measured right now in this tab, for whom, and the way to one's own figures.
// (popup.html?tab=N shows tab N: for opening the popup as a page, as the tests and screenshots do.)
'use strict'

async function tabId() {
  var wanted = Number(new URLSearchParams(location.search).get('tab'))
  if (wanted) return wanted
  var tabs = await chrome.tabs.query({ active: true, currentWindow: true })
  return tabs[0] && tabs[0].id
}

async function statusOf(tab) {
  try {
    return await chrome.tabs.sendMessage(tab, { type: 'status' })
  } catch (e) {
    return null // no content script there: not a configured CRM page
  }
}

function fact(term, value) {
  return [el('dt', {}, term), el('dd', {}, value)]
}

async function show() {
  var main = document.getElementById('main')
  var badge = document.getElementById('badge')
  var state = await chrome.runtime.sendMessage({ type: 'state' })
  var config = state && state.config
  var parts = []
  if (!config) {
    parts.push(el('h1', {}, say('notSetUp')), el('p', {}, say('notSetUpHint')))
    main.replaceChildren(...parts)
    return
  }
  document.getElementById('scope').textContent = say('scope', [config.origins.map(host).join(', ')])
  var status = await statusOf(await tabId())
  if (state.allowed.length < config.origins.length) {
    parts.push(el('p', { class: 'notice' }, say('notAllowed', [config.origins.filter((o) => state.allowed.indexOf(o) < 0).map(host).join(', ')])))
  }
  if (!status) {
    badge.hidden = false
    badge.className = 'badge off'
    badge.textContent = say('badgeOff')
    parts.unshift(el('h1', {}, say('notHere')), el('p', {}, say('notHereHint')))
  } else {
    badge.hidden = false
    badge.className = 'badge on'
    badge.textContent = say('badgeOn')
    var total = status.active_ms + status.idle_ms + status.hidden_ms
    if (status.step) {
      parts.push(el('p', { class: 'eyebrow' }, say('stepNow')), el('h1', { id: 'step' }, status.title))
      parts.push(el('p', { id: 'state', class: 'state ' + status.state }, say('state_' + status.state)))
      var dl = el('dl', { class: 'facts' })
      dl.append(...fact(say('onStep'), duration(total)))
      dl.append(...fact(say('split'), say('splitValue', [duration(status.active_ms), duration(status.idle_ms), duration(status.hidden_ms)])))
      parts.push(dl)
    } else {
      parts.push(el('h1', { id: 'step' }, say('noStep')), el('p', {}, say('noStepHint')))
      if (status.discovering) parts.push(el('p', { id: 'discovery', class: 'muted' }, say('discoveryOn')))
    }
    var whoText = status.name || status.manager
    if (whoText) parts.push(el('p', { id: 'who' }, say('forWhom', [whoText])))
    else if (status.signedOut) parts.push(el('p', { id: 'who', class: 'notice' }, say('signedOut')))
    else parts.push(el('p', { id: 'who', class: 'notice' }, say('noIdentity')))
  }
  if (config.identity.signin && status && status.signedOut) {
    parts.push(el('p', {}, el('a', { class: 'button', id: 'signin', href: config.identity.signin + '/login?next=%2Fme', target: '_blank' }, say('signIn'))))
  }
  parts.push(el('p', {}, el('a', { class: 'button secondary', id: 'my-figures', href: config.stepwatch + '/me', target: '_blank' }, say('myFigures'))))
  main.replaceChildren(...parts)
}

document.addEventListener('DOMContentLoaded', function () {
  show()
  setInterval(show, 1000)
})
