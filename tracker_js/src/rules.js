// Which step a URL path is: shared by the tracker and the discovery script (src/discovery.js), so
// that both read a site's URL rules the same way. Reads `config` (the site's config) of the file it is
// built into.

// A segment that looks like an identifier: all digits, an e-mail address (has an @), or 8+
// characters with a digit among them, which covers UUIDs and hex or base64 ids.
function clean(segment) {
  return /^\d+$|@|^(?=.*\d).{8}/.test(segment) ? ':id' : segment
}

// First pattern (in config order) that matches the whole path. A pattern becomes a regular
// expression: each `*` or `{name}` stands for one non-empty segment.
function match(path) {
  var found
  var param = /\*|{(\w+)}/g
  config.steps.some(function (step) {
    return step.patterns.some(function (pattern) {
      var i = 0
      var customer
      var parts = RegExp('^' + pattern.replace(param, '([^/]+)') + '$').exec(path)
      return (
        parts &&
        (found = {
          _step: step.key,
          _path: pattern.replace(param, function (all, name) {
            var part = parts[++i]
            if (name == 'customer') customer = part
            return name ? ':' + name : clean(part)
          }),
          _customer: customer
        })
      )
    })
  })
  return found
}
