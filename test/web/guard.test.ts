/**
 * The web UI's door, over real HTTP against a real node (no browser): the token (401
 * without it, then the HttpOnly SameSite=Strict cookie), the Host and Origin checks (403),
 * the security headers, the JSON shapes of the API, and the refusal of an address that is
 * not loopback unless --web-bind asked for it.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { allowedHosts, judge } from "../../src/web/guard.ts"
import { hostOf } from "../../src/web/Web.ts"
import { ensureBundle, ROOT, startPair, type WebNode } from "./support.ts"

interface Answer {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

/** One request with exactly these headers (fetch would not let a test set Host). */
const request = (node: WebNode, method: string, pathAndQuery: string, headers: Record<string, string>, body?: string) =>
  new Promise<Answer>((resolve, reject) => {
    const req = http.request({ host: node.web.host, port: node.web.port, method, path: pathAndQuery, headers }, (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (c: string) => void (text += c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
    })
    req.on("error", reject)
    req.setTimeout(5000, () => req.destroy(new Error("no answer in 5 s")))
    if (body !== undefined) req.write(body)
    req.end()
  })

let pair: Awaited<ReturnType<typeof startPair>>
let host: string
let cookie: string

beforeAll(async () => {
  await ensureBundle()
  pair = await startPair()
  host = `${pair.alice.web.host}:${pair.alice.web.port}`
  cookie = `p2pchat_web_${pair.alice.web.port}=${pair.alice.web.token}`
})

afterAll(async () => {
  await pair?.close()
})

describe("the web UI's token", () => {
  it("prints an address with a random token, on loopback", () => {
    expect(pair.alice.web.url).toMatch(/^http:\/\/127\.0\.0\.2:\d+\/\?token=[A-Za-z0-9_-]{32}$/)
    expect(pair.alice.web.token).not.toBe(pair.bob.web.token)
    expect(pair.alice.web.warning).toBeUndefined()
  })

  it("answers 401 to every request without the token: the page, the bundle, the API, the live stream", async () => {
    for (const p of ["/", "/app.js", "/api/me", "/api/peers", "/api/events", "/api/history?with=bob"]) {
      const r = await request(pair.alice, "GET", p, { host })
      expect(r.status, p).toBe(401)
      expect(r.body, p).not.toContain(pair.alice.node.fingerprint)
    }
    const wrong = await request(pair.alice, "GET", "/api/me", { host, cookie: `p2pchat_web_${pair.alice.web.port}=not-the-token` })
    expect(wrong.status).toBe(401)
    const wrongUrl = await request(pair.alice, "GET", "/?token=nope", { host })
    expect(wrongUrl.status).toBe(401)
  })

  it("takes the token from the URL once: 303 to the page without it, with an HttpOnly SameSite=Strict cookie", async () => {
    const r = await request(pair.alice, "GET", `/?token=${pair.alice.web.token}`, { host })
    expect(r.status).toBe(303)
    expect(r.headers.location).toBe("/")
    const set = String(r.headers["set-cookie"])
    expect(set).toContain(`p2pchat_web_${pair.alice.web.port}=${pair.alice.web.token}`)
    expect(set).toContain("HttpOnly")
    expect(set).toContain("SameSite=Strict")
    const page = await request(pair.alice, "GET", "/", { host, cookie })
    expect(page.status).toBe(200)
    expect(page.body).toContain('<script type="module" src="/app.js">')
    expect(page.body).not.toMatch(/<script>|<script [^>]*>[^<]/) // no inline script
  })

  it("sends a CSP without inline script, and the other security headers, on every answer", async () => {
    for (const [p, h] of [["/", { host, cookie }], ["/api/me", { host, cookie }], ["/api/me", { host }]] as const) {
      const r = await request(pair.alice, "GET", p, h)
      const csp = String(r.headers["content-security-policy"])
      expect(csp).toContain("script-src 'self'")
      expect(csp).toContain("default-src 'none'")
      expect(csp).not.toContain("unsafe-inline")
      expect(r.headers["x-content-type-options"]).toBe("nosniff")
      expect(r.headers["referrer-policy"]).toBe("no-referrer")
    }
  })
})

describe("the Host and Origin checks", () => {
  it("answers 403 to a Host that is not this server (DNS rebinding), even with the token", async () => {
    for (const h of ["evil.example:80", `evil.example:${pair.alice.web.port}`, `127.0.0.2:${pair.alice.web.port + 1}`]) {
      const r = await request(pair.alice, "GET", "/api/me", { host: h, cookie })
      expect(r.status, h).toBe(403)
    }
    const local = await request(pair.alice, "GET", "/api/me", { host: `localhost:${pair.alice.web.port}`, cookie })
    expect(local.status).toBe(200)
  })

  it("answers 403 to a foreign Origin, and to a change without an Origin", async () => {
    const body = JSON.stringify({ away: true })
    const json = { "content-type": "application/json" }
    const foreign = await request(pair.alice, "POST", "/api/away", { host, cookie, origin: "http://evil.example", ...json }, body)
    expect(foreign.status).toBe(403)
    const foreignGet = await request(pair.alice, "GET", "/api/me", { host, cookie, origin: "http://evil.example" })
    expect(foreignGet.status).toBe(403)
    const none = await request(pair.alice, "POST", "/api/away", { host, cookie, ...json }, body)
    expect(none.status).toBe(403)
    const crossSite = await request(pair.alice, "GET", "/api/me", { host, cookie, "sec-fetch-site": "cross-site" })
    expect(crossSite.status).toBe(403)
    const own = await request(pair.alice, "POST", "/api/away", { host, cookie, origin: `http://${host}`, ...json }, JSON.stringify({ away: false }))
    expect(own.status).toBe(200)
    expect(JSON.parse(own.body)).toEqual({ away: false })
  })

  it("judges by the rules alone too", () => {
    const hosts = allowedHosts("127.0.0.1", 6080)
    const t = "x".repeat(32)
    const ok = { method: "GET", headers: { host: "127.0.0.1:6080", cookie: `p2pchat_web_6080=${t}` }, urlToken: undefined }
    expect(judge(ok, hosts, t).status).toBe(200)
    expect(judge({ ...ok, headers: { ...ok.headers, host: "localhost:6080" } }, hosts, t).status).toBe(200)
    expect(judge({ ...ok, headers: { host: "127.0.0.1:6080" } }, hosts, t).status).toBe(401)
    // another node's page on this host keeps its own cookie: the name holds the port
    expect(judge({ ...ok, headers: { ...ok.headers, cookie: `p2pchat_web_6081=${t}` } }, hosts, t).status).toBe(401)
    expect(judge({ ...ok, headers: { host: "127.0.0.1:6080" }, urlToken: t }, hosts, t).setCookie).toMatch(/^p2pchat_web_6080=x{32}; /)
    expect(judge({ ...ok, headers: { cookie: ok.headers.cookie } }, hosts, t).status).toBe(403)
    expect(judge({ ...ok, headers: { ...ok.headers, origin: "http://127.0.0.1:6081" } }, hosts, t).status).toBe(403)
    expect(judge({ ...ok, method: "POST", headers: { ...ok.headers, origin: "http://127.0.0.1:6080" } }, hosts, t).status).toBe(200)
  })
})

describe("where the web UI listens", () => {
  it("refuses an address that is not loopback unless --web-bind asked for it; loopback needs no flag", async () => {
    const refused = await Effect.runPromise(Effect.flip(hostOf({ port: 0, bind: "192.168.1.20" })))
    expect(refused.message).toContain("loopback only")
    expect(await Effect.runPromise(hostOf({ port: 0, bind: "192.168.1.20", bindAsked: true }))).toBe("192.168.1.20")
    expect(await Effect.runPromise(hostOf({ port: 0 }))).toBe("127.0.0.1")
    expect(await Effect.runPromise(hostOf({ port: 0, bind: "127.0.0.5" }))).toBe("127.0.0.5")
    const junk = await Effect.runPromise(Effect.flip(hostOf({ port: 0, bind: "evil.example", bindAsked: true })))
    expect(junk.message).toContain("IPv4")
  })
})

describe("the page's bundle", () => {
  it("is under 150 KB of JavaScript before gzip, and builds no HTML from strings", () => {
    const js = fs.readFileSync(path.join(ROOT, "dist", "web", "app.js"), "utf8")
    expect(js.length).toBeLessThan(150 * 1024)
    for (const file of fs.readdirSync(path.join(ROOT, "web"))) {
      const source = fs.readFileSync(path.join(ROOT, "web", file), "utf8")
      expect(source, file).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|dangerouslySetInnerHTML|document\.write/)
    }
  })
})

describe("the API's JSON", () => {
  it("gives whoami --json and peers --json shapes", async () => {
    const me = await request(pair.alice, "GET", "/api/me", { host, cookie })
    expect(JSON.parse(me.body)).toMatchObject({ username: "alice", fingerprint: pair.alice.node.fingerprint, id: pair.alice.node.id })
    const bad = await request(pair.alice, "POST", "/api/send", { host, cookie, origin: `http://${host}`, "content-type": "application/json" }, "{\"to\":1}")
    expect(bad.status).toBe(400)
    expect(JSON.parse(bad.body)).toMatchObject({ event: "error" })
  })
})
