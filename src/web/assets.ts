/**
 * The page's files: the HTML written here (it holds no script, only a link to the bundle),
 * and the browser code and style that `npm run build` bundles from web/ into dist/web/
 * (package.json `build:web`), read once when the server starts.
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { WebError } from "./WebError.ts"

export interface Asset {
  readonly body: Uint8Array
  readonly type: string
}

export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>p2pchat</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
<script type="module" src="/app.js"></script>
</head>
<body>
<div id="app"><p class="loading">Loading p2pchat…</p></div>
<noscript>p2pchat's web UI needs JavaScript.</noscript>
</body>
</html>
`

/**
 * Where the bundle is: dist/web beside the running bundle (dist/p2pchat.js or a chunk of
 * it), or under the package root when the sources run as they are (the tests).
 */
export const bundleDir = (from: string = fileURLToPath(import.meta.url)): string | undefined => {
  let dir = path.dirname(from)
  for (let i = 0; i < 5; i++) {
    for (const candidate of [path.join(dir, "web"), path.join(dir, "dist", "web")]) {
      if (fs.existsSync(path.join(candidate, "app.js"))) return candidate
    }
    dir = path.dirname(dir)
  }
  return undefined
}

/** The files the server answers with, by path. */
export const loadAssets: Effect.Effect<ReadonlyMap<string, Asset>, WebError> = Effect.suspend(() => {
  const dir = bundleDir()
  if (dir === undefined) {
    return Effect.fail(new WebError({ reason: "Usage", status: 500, message: "the web UI's files are missing (dist/web): run `npm run build`" }))
  }
  return Effect.try({
    try: () =>
      new Map<string, Asset>([
        ["/", { body: new TextEncoder().encode(INDEX_HTML), type: "text/html; charset=utf-8" }],
        ["/app.js", { body: fs.readFileSync(path.join(dir, "app.js")), type: "text/javascript; charset=utf-8" }],
        ["/app.css", { body: fs.readFileSync(path.join(dir, "app.css")), type: "text/css; charset=utf-8" }]
      ]),
    catch: (cause) => new WebError({ reason: "Usage", status: 500, message: `the web UI's files in ${dir} cannot be read`, cause })
  })
})
