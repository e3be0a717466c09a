/**
 * `p2pchat start --web` from the built CLI: the address printed once with its token, the
 * page served to it, a usage error for a bad --web-port or for --open without --web, and a
 * prompt stop (SIGTERM) while a page holds its live stream open.
 */
import * as http from "node:http"
import { afterAll, describe, expect, it } from "vitest"
import { cleanup, ensureBuilt, runCli, spawnCli, tempDir } from "../support/cli.ts"

afterAll(cleanup)

const node = ["--bind", "127.0.0.1", "--udp-port", "0", "--tcp-port", "0", "--name", "webby"]

describe("p2pchat start --web", () => {
  it("prints the address with a token once, serves the page to it, and stops promptly with a live stream open", async () => {
    await ensureBuilt()
    const p = spawnCli(["start", "--web", "--web-port", "0", ...node, "--data-dir", tempDir()])
    const { line } = await p.waitForLine((l) => l.startsWith("web UI: "), { timeoutMs: 15_000 })
    const url = new URL(line.slice("web UI: ".length))
    expect(url.hostname).toBe("127.0.0.1")
    const token = url.searchParams.get("token")!
    expect(token).toMatch(/^[A-Za-z0-9_-]{32}$/)
    const me = await fetch(new URL(`/api/me?token=${token}`, url))
    expect(me.status).toBe(200)
    expect(await me.json()).toMatchObject({ username: "webby" })
    expect((await fetch(new URL("/api/me", url))).status).toBe(401)
    // a page's live stream, held open
    const stream = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get({ host: url.hostname, port: url.port, path: "/api/events", headers: { cookie: `p2pchat_web_${url.port}=${token}` } }, resolve).on("error", reject)
    })
    expect(stream.statusCode).toBe(200)
    expect(stream.headers["content-type"]).toContain("text/event-stream")
    stream.resume()
    const stoppedAt = Date.now()
    const exit = await p.stop()
    expect(Date.now() - stoppedAt).toBeLessThan(2_000)
    expect(exit.code).toBe(143)
    expect(p.stdout.filter((l) => l.includes("token=")).length).toBe(1)
  }, 30_000)

  it("with --json, prints the address as an info event line", async () => {
    await ensureBuilt()
    const p = spawnCli(["start", "--web", "--web-port", "0", "--json", ...node, "--data-dir", tempDir()])
    const { value } = await p.waitForJson((v) => v.event === "info" && String(v.message).startsWith("web UI: http://127.0.0.1:"), 15_000)
    expect(value.message).toMatch(/token=[A-Za-z0-9_-]{32}$/)
    await p.stop()
    for (const line of p.stdout) expect(() => JSON.parse(line), line).not.toThrow()
  }, 30_000)

  it("refuses a bad --web-port, and --open or --web-bind without --web (usage errors, exit 2)", async () => {
    await ensureBuilt()
    for (const args of [["--web", "--web-port", "70000"], ["--open"], ["--web-bind", "127.0.0.1"], ["--web", "--web-bind", "example.org"]]) {
      const r = await runCli(["start", ...args, ...node, "--data-dir", tempDir()], { timeoutMs: 10_000 })
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(2)
      expect(r.stderr).toMatch(/web/)
    }
  }, 30_000)
})
