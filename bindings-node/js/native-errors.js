'use strict'
// The native layer's errors lead with their code (`ERR_X: ...`, see core's
// `embed::error`): moved to `code`, as Node's own errors carry it.

function withCode(e) {
  if (e && typeof e.message === 'string') {
    const m = /^(ERR_[A-Z_]+): ([\s\S]*)$/.exec(e.message)
    if (m) {
      e.code = m[1]
      e.message = m[2]
    }
  }
  return e
}

/** Calls a native function; its error, if any, with its code. */
function callNative(fn) {
  try {
    return fn()
  } catch (e) {
    throw withCode(e)
  }
}

module.exports = { withCode, callNative }
