// vitest 5's reporter calls Map.groupBy (Node 21+) when it prints a failure; on Node 20
// that crash hid the failure itself. Loaded with --import before vitest starts.
if (typeof Map.groupBy !== "function") {
  Map.groupBy = function groupBy(items, key) {
    const map = new Map()
    let i = 0
    for (const item of items) {
      const k = key(item, i++)
      const group = map.get(k)
      if (group) group.push(item)
      else map.set(k, [item])
    }
    return map
  }
}
if (typeof Object.groupBy !== "function") {
  Object.groupBy = function groupBy(items, key) {
    const out = Object.create(null)
    let i = 0
    for (const item of items) (out[key(item, i++)] ??= []).push(item)
    return out
  }
}
