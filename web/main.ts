/**
 * The page's controller: loads what the node knows once the live stream is subscribed,
 * applies each event of the stream, sends, and tells the view to render. Notifications go
 * through the browser's Notification API when the tab is hidden (permission asked once, at
 * the first message sent, which is a click or a key press of the user's).
 */
import { render } from "preact"
import { h } from "preact"
import { get, type Group, type HistoryLine, type Key, type Me, type NodeEvent, type Peer, post, query, type SendResult, type Transfer, type Verify } from "./api.ts"
import * as Store from "./store.ts"
import { App } from "./view.tsx"
import "./app.css"

const state = Store.initial()
let localIds = 0

export interface Actions {
  readonly open: (conv: string) => void
  readonly send: (text: string) => Promise<void>
  readonly setAway: (away: boolean) => Promise<void>
  readonly verify: (user: string) => Promise<Verify>
  readonly trust: (user: string, fingerprint: string) => Promise<void>
  readonly accept: (id: string) => Promise<void>
  readonly decline: (id: string) => Promise<void>
  readonly sendFiles: (files: ReadonlyArray<File>) => Promise<void>
  readonly dismiss: () => void
}

let scheduled = false
const redraw = () => {
  if (scheduled) return
  scheduled = true
  queueMicrotask(() => {
    scheduled = false
    const unread = Store.unreadTotal(state)
    document.title = `${unread > 0 ? `(${unread}) ` : ""}p2pchat${state.me?.username ? ` – ${state.me.username}` : ""}`
    render(h(App, { state, actions }), document.getElementById("app")!)
  })
}

const failed = (e: unknown) => {
  state.notice = e instanceof Error ? e.message : String(e)
  redraw()
}

const loadConversation = async (conv: string) => {
  const lines = await get<Array<HistoryLine>>(query("/api/history", { with: conv }))
  state.messages.set(conv, lines.map(Store.fromHistory))
  redraw()
}

const loadKeys = async () => {
  const keys = await get<Array<Key>>("/api/keys")
  state.keys = new Map(keys.map((k) => [Store.keyOf(k.username), k]))
  redraw()
}

/** Everything, after the stream's `hello`: nothing published meanwhile is missed. */
const loadAll = async () => {
  const [me, peers, groups, away, files] = await Promise.all([
    get<Me>("/api/me"),
    get<Array<Peer>>("/api/peers"),
    get<Array<Group>>("/api/groups"),
    get<{ away: boolean }>("/api/away"),
    get<Array<Transfer>>("/api/files").catch(() => undefined)
  ])
  state.me = me
  state.peers = new Map(peers.map((p) => [Store.keyOf(p.username), p]))
  state.groups = groups
  state.away = away.away
  state.files = files !== undefined
  for (const t of files ?? []) state.transfers.set(t.id, t)
  redraw()
  await loadKeys()
  if (state.current !== undefined) await loadConversation(state.current)
}

let asked = false
const askNotifications = () => {
  if (asked || typeof Notification === "undefined" || Notification.permission !== "default") return
  asked = true
  if (localStorage.getItem("p2pchat.notifications.asked") === "yes") return
  localStorage.setItem("p2pchat.notifications.asked", "yes")
  void Notification.requestPermission()
}

const notify = (e: Extract<NodeEvent, { event: "message" }>) => {
  if (!document.hidden || typeof Notification === "undefined" || Notification.permission !== "granted") return
  // The Notification API shows title and body as text.
  const n = new Notification(e.group !== undefined ? `${e.from} in #${e.group}` : e.from, { body: e.text, tag: e.id })
  n.onclick = () => {
    window.focus()
    actions.open(Store.conversationOf(e))
  }
}

const connect = () => {
  const stream = new EventSource("/api/events")
  stream.addEventListener("hello", () => {
    state.connected = true
    loadAll().catch(failed)
  })
  stream.onmessage = (m: MessageEvent<string>) => {
    const e = JSON.parse(m.data) as NodeEvent
    const message = Store.apply(state, e)
    if (message !== undefined) notify(message)
    if (e.event === "warning" || (e.event === "info" && /trusted|key/.test(e.message))) loadKeys().catch(failed)
    redraw()
  }
  stream.onerror = () => {
    state.connected = false
    redraw()
  }
}

/** Whom a conversation's sends go to: `*all*`, `#` and a group's id, or the peer's name as it announces it. */
const recipientOf = (conv: string): string =>
  conv === Store.ALL || conv.startsWith("#") ? conv : (state.peers.get(conv)?.username ?? state.known.get(conv) ?? conv)

export const actions: Actions = {
  open: (conv) => {
    if (conv === "") {
      state.current = undefined
      return redraw()
    }
    Store.open(state, conv)
    redraw()
    loadConversation(conv).catch(failed)
  },
  send: async (text) => {
    const conv = state.current
    if (conv === undefined || text.trim() === "") return
    askNotifications()
    const to = recipientOf(conv)
    const m = Store.sending(state, conv, text, `local-${++localIds}`)
    redraw()
    try {
      Store.sent(state, m, await post<SendResult>("/api/send", { to, text }))
    } catch (e) {
      m.state = "failed"
      m.reason = e instanceof Error ? e.message : String(e)
    }
    redraw()
  },
  setAway: async (away) => {
    state.away = (await post<{ away: boolean }>("/api/away", { away })).away
    redraw()
  },
  verify: (user) => get<Verify>(query("/api/verify", { user })),
  trust: async (user, fingerprint) => {
    await post("/api/trust", { user, fingerprint })
    await loadKeys()
    if (state.current !== undefined) await loadConversation(state.current)
  },
  accept: async (id) => {
    const t = await post<Transfer>("/api/files/accept", { id })
    state.transfers.set(t.id, t)
    redraw()
  },
  decline: async (id) => {
    const t = await post<Transfer>("/api/files/decline", { id })
    state.transfers.set(t.id, t)
    redraw()
  },
  sendFiles: async (files) => {
    const conv = state.current
    if (conv === undefined) return
    for (const file of files) {
      const response = await fetch(query("/api/files/send", { to: recipientOf(conv), name: file.name }), {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/octet-stream" },
        body: file
      })
      const body = await response.json().catch(() => ({})) as { message?: string }
      if (!response.ok) failed(new Error(body.message ?? response.statusText))
    }
    const list = await get<Array<Transfer>>("/api/files").catch(() => [] as Array<Transfer>)
    for (const t of list) state.transfers.set(t.id, t)
    redraw()
  },
  dismiss: () => {
    state.notice = undefined
    redraw()
  }
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.current !== undefined) {
    Store.open(state, state.current)
    redraw()
  }
})

redraw()
connect()
