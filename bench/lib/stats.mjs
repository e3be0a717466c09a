// Small statistics for the benchmark figures.

export const sorted = (xs) => [...xs].sort((a, b) => a - b)

export const median = (xs) => {
  const s = sorted(xs)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Nearest-rank percentile, p in (0, 100]. */
export const percentile = (xs, p) => {
  const s = sorted(xs)
  if (s.length === 0) return NaN
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}

/** Median and spread of several runs. */
export const summary = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs.length })
