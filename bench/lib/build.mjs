// Bundles TypeScript for the benchmark the way package.json's build script bundles the CLI:
// one ESM file for Node 20, better-sqlite3 external, a createRequire banner. Output in
// dist/bench/ (ignored by git): the drivers (bench/drivers/*.ts) and the SQLite seam the
// baseline opens its database with (src/services/Sql.ts, bench/baseline/db.mjs).
import { build } from "esbuild"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const ROOT = fileURLToPath(new URL("../..", import.meta.url))
export const OUT_DIR = path.join(ROOT, "dist", "bench")
/** The bundled SQLite seam: node:sqlite or better-sqlite3, chosen as p2pchat chooses (P2PCHAT_SQLITE). */
export const SQL_BUNDLE = path.join(OUT_DIR, "sql.js")

/** Bundles `entry` (relative to the root) into `outfile`, or throws with esbuild's first errors. */
const bundle = async (entry, outfile) => {
  try {
    await build({
      entryPoints: [path.join(ROOT, entry)],
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
    throw new Error(`cannot bundle ${entry}: ${errors.join("; ")}`)
  }
  return outfile
}

/** Returns the bundle's path, or throws with esbuild's first errors. */
export const bundleDriver = (name) => bundle(path.join("bench", "drivers", `${name}.ts`), path.join(OUT_DIR, `${name}.js`))

/**
 * Bundles the SQLite seam into SQL_BUNDLE (plain Node: the seam imports no Effect, so the
 * baseline stays framework-free). bench/run.mjs does it before any baseline process starts.
 */
export const bundleSql = () => bundle(path.join("src", "services", "Sql.ts"), SQL_BUNDLE)
