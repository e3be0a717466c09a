/**
 * `npm run fuzz -- --runs N [--seed S] [--case I[,J...]] [--kinds k1,k2] [--concurrency C]`
 *
 * Runs N fuzz cases (test/fuzz/run.ts) against the pure decoders and one in-process node
 * on loopback, prints a summary with the failure count and the elapsed time, and exits 1 on
 * any failure. Every failure prints the command that replays it. Bundled by esbuild (see the
 * "fuzz" script in package.json) into dist/fuzz.js.
 */
import { parseArgs } from "node:util"
import { randomSeed } from "../test/fuzz/rng.ts"
import { DEFAULT_MIX, formatSummary, type Kind, KINDS, runFuzz } from "../test/fuzz/run.ts"

const usage = `usage: npm run fuzz -- [--runs N] [--seed S] [--case I[,J...]] [--kinds ${KINDS.join(",")}] [--concurrency C] [--batch B]

  --runs N         number of cases (default 10000)
  --seed S         the run's seed (default: random; printed)
  --case I,...     replay only these cases of the run with --seed
  --kinds k,...    only these kinds of case (mix: ${KINDS.map((k) => `${k} ${DEFAULT_MIX[k]}`).join(", ")})
  --concurrency C  connections open at once (default 24)
  --batch B        network cases between whole-node checks (default 500)`

const fail = (message: string): never => {
  process.stderr.write(`fuzz: ${message}\n${usage}\n`)
  process.exit(2)
}

const int = (name: string, text: string | undefined, fallback: number, min = 1): number => {
  if (text === undefined) return fallback
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < min) fail(`--${name}: expected an integer >= ${min}, got '${text}'`)
  return n
}

const main = async () => {
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      options: {
        runs: { type: "string" },
        seed: { type: "string" },
        case: { type: "string" },
        kinds: { type: "string" },
        concurrency: { type: "string" },
        batch: { type: "string" },
        help: { type: "boolean", short: "h" }
      }
    }).values
  } catch (e) {
    return fail((e as Error).message)
  }
  if (values["help"] === true) {
    process.stdout.write(usage + "\n")
    return
  }
  const runs = int("runs", values["runs"] as string | undefined, 10_000)
  const seed = values["seed"] === undefined ? randomSeed() : int("seed", values["seed"] as string, 0, 0) >>> 0
  const cases = (values["case"] as string | undefined)?.split(",").map((c) => int("case", c.trim(), 0, 0))
  if (cases !== undefined && values["seed"] === undefined) fail("--case needs the --seed of the run it comes from")
  const kinds = (values["kinds"] as string | undefined)?.split(",").map((k) => k.trim()) as Array<Kind> | undefined
  for (const k of kinds ?? []) if (!KINDS.includes(k)) fail(`--kinds: unknown kind '${k}'`)

  process.stdout.write(`fuzz: ${cases?.length ?? runs} cases, seed ${seed}\n`)
  const summary = await runFuzz({
    runs,
    seed,
    cases,
    kinds,
    concurrency: int("concurrency", values["concurrency"] as string | undefined, 24),
    batch: int("batch", values["batch"] as string | undefined, 500),
    onProgress: (p) =>
      process.stdout.write(`  ${p.done}/${p.runs} cases, ${(p.elapsedMs / 1000).toFixed(0)} s, ${p.failures} failures\n`)
  })
  process.stdout.write(formatSummary(summary) + "\n")
  process.exit(summary.failures > 0 ? 1 : 0)
}

main().catch((e: unknown) => {
  process.stderr.write(`fuzz: crashed: ${(e as Error)?.stack ?? String(e)}\n`)
  process.exit(1)
})
