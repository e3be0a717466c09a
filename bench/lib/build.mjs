// Bundles a TypeScript benchmark driver (bench/drivers/*.ts) the way package.json's build
// script bundles the CLI: one ESM file for Node 20, better-sqlite3 external, a createRequire
// banner. Output in dist/bench/ (ignored by git).
import { build } from "esbuild"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const ROOT = fileURLToPath(new URL("../..", import.meta.url))
export const OUT_DIR = path.join(ROOT, "dist", "bench")

/** Returns the bundle's path, or throws with esbuild's first errors. */
export const bundleDriver = async (name) => {
  const outfile = path.join(OUT_DIR, `${name}.js`)
  try {
    await build({
      entryPoints: [path.join(ROOT, "bench", "drivers", `${name}.ts`)],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      external: ["better-sqlite3"],
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
      outfile,
      logLevel: "silent"
    })
  } catch (e) {
    const errors = e.errors?.slice(0, 3).map((x) => `${x.location?.file ?? ""}:${x.location?.line ?? ""} ${x.text}`) ?? [e.message]
    throw new Error(`cannot bundle bench/drivers/${name}.ts: ${errors.join("; ")}`)
  }
  return outfile
}
