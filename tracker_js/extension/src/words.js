// The extension's words (chrome.i18n, _locales/en|ru) and its durations in the browser's language.
'use strict'
var say = function (key, values) {
  return chrome.i18n.getMessage(key, values) || key
}
var language = say('locale') // the language of the words shown, so that numbers follow it too

// "2 min 10 s" / "2 мин 10 с": whole seconds under an hour, else hours and minutes; a figure and its
// unit never wrap apart.
function duration(ms) {
  var number = new Intl.NumberFormat(language)
  var unit = function (n, key) {
    return say(key, [number.format(n)]).replace(' ', '\u00a0')
  }
  var s = Math.floor(ms / 1000)
  if (s < 60) return unit(s, 'unitS')
  if (s < 3600) return unit(Math.floor(s / 60), 'unitMin') + ' ' + unit(s % 60, 'unitS')
  return unit(Math.floor(s / 3600), 'unitH') + ' ' + unit(Math.floor(s / 60) % 60, 'unitMin')
}

function host(origin) {
  try {
    return new URL(origin).host
  } catch (e) {
    return origin
  }
}

// Element helper: el('p', {class: 'muted'}, 'text', child...)
function el(tag, attributes) {
  var node = document.createElement(tag)
  for (var name in attributes || {}) node.setAttribute(name, attributes[name])
  for (var i = 2; i < arguments.length; i++) if (arguments[i] != null) node.append(arguments[i])
  return node
}

document.addEventListener('DOMContentLoaded', function () {
  document.documentElement.lang = language
  document.querySelectorAll('[data-i18n]').forEach(function (node) {
    node.textContent = say(node.dataset.i18n)
  })
})
