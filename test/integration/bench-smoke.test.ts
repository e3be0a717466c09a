/**
 * A smoke run of the benchmark harness (`node bench/run.mjs --quick`): tiny counts, no
 * goals asserted (a timed assertion would be flaky on a shared machine). It proves that
 * the harness runs end to end on loopback, produces a row for every figure of the
 * performance issue, and writes the JSON shape the issue asks for.
 */
import { describe, expect, it } from "vitest"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ensureBuilt, REPO_ROOT } from "../support/cli.ts"

const FIGURES = [
  "secure-throughput",
  "plain-throughput",
  "fsync-p99",
  "ack-latency-p99",
  "concurrent-connections",
  "handshakes-per-second",
  "group-fanout-p99",
  "file-throughput",
  "file-throughput-vs-disk",
  "file-peak-rss",
  "web-roundtrip-p99",
  "web-first-load",
  "registry-10k-memory",
  "discovery-latency",
  "presence-cost",
  "presence-replay-cost",
  "cold-start-help",
  "idle-rss"
]

/** Figures that need nothing beyond presence, plain chat and the CLI: always measured. */
const ALWAYS_MEASURED = [
  "plain-throughput",
  "group-fanout-p99",
  "file-throughput",
  "file-throughput-vs-disk",
  "file-peak-rss",
  "concurrent-connections",
  "registry-10k-memory",
  "discovery-latency",
  "presence-cost",
  "presence-replay-cost",
  "cold-start-help",
  "idle-rss"
]

const runQuick = (jsonFile: string) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [path.join(REPO_ROOT, "bench", "run.mjs"), "--quick", "--json", jsonFile],
      { cwd: REPO_ROOT, timeout: 170_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr })
    )
  })

describe("bench harness (quick smoke run)", () => {
  it("produces every figure of the issue and writes the JSON table", async () => {
    await ensureBuilt()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-bench-smoke-"))
    const jsonFile = path.join(dir, "bench.json")
    try {
      const run = await runQuick(jsonFile)
      expect(run.code, run.stderr.slice(-3000)).toBe(0)
      for (const name of FIGURES) expect(run.stdout).toContain(name)

      const table = JSON.parse(fs.readFileSync(jsonFile, "utf8")) as Array<Record<string, unknown>>
      expect(table.map((r) => r["name"])).toEqual(FIGURES)
      for (const row of table) {
        expect(Object.keys(row).sort()).toEqual(["baseline", "goal", "name", "pass", "ratio", "unit", "value"])
        expect(typeof row["unit"]).toBe("string")
        expect(typeof row["goal"]).toBe("string")
        expect(typeof row["pass"]).toBe("boolean")
        for (const key of ["value", "baseline", "ratio"]) {
          const v = row[key]
          expect(v === null || (typeof v === "number" && Number.isFinite(v)), `${row["name"]}.${key} = ${v}`).toBe(true)
        }
        if (row["value"] === null) {
          // A figure that could not be measured says why, and does not pass.
          expect(row["pass"]).toBe(false)
          expect(run.stdout).toMatch(new RegExp(`${row["name"]}: not measured: \\S`))
        }
        if (row["baseline"] === null || row["value"] === null) expect(row["ratio"]).toBeNull()
      }
      for (const name of ALWAYS_MEASURED) {
        const row = table.find((r) => r["name"] === name)!
        expect(row["value"], `${name}: ${run.stdout}`).not.toBeNull()
      }
      // figures judged against a baseline of the same run have it (a small file, a group of 4 here)
      for (const name of ["group-fanout-p99", "file-throughput", "file-throughput-vs-disk", "file-peak-rss"]) {
        const row = table.find((r) => r["name"] === name)!
        expect(row["baseline"], `${name}: ${run.stdout}`).toBeGreaterThan(0)
        expect(row["value"], `${name}: ${run.stdout}`).toBeGreaterThan(0)
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 180_000)
})
