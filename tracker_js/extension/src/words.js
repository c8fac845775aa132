// The extension's words (chrome.i18n, _locales/en|ru) and its durations in the browser's language.
'use strict'
var say = function (key, values) {
  return chrome.i18n.getMessage(key, values) || key
}
var language = chrome.i18n.getUILanguage()

// "2 min 10 s" / "2 мин 10 с": whole seconds under an hour, else hours and minutes.
function duration(ms) {
  var unit = function (n, name) {
    return new Intl.NumberFormat(language, { style: 'unit', unit: name, unitDisplay: 'short' }).format(n)
  }
  var s = Math.floor(ms / 1000)
  if (s < 60) return unit(s, 'second')
  if (s < 3600) return unit(Math.floor(s / 60), 'minute') + ' ' + unit(s % 60, 'second')
  return unit(Math.floor(s / 3600), 'hour') + ' ' + unit(Math.floor(s / 60) % 60, 'minute')
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
