/**
 * The live stream (docs/web.md "Live stream"): Server-Sent Events, one `data:` line of JSON
 * per event of the node, exactly the line `start --json` prints for it (`toJson`), so the
 * page and a script read one contract. The first event, `hello`, is sent once the stream is
 * subscribed: what the page loads after it cannot miss an event published meanwhile.
 */
import * as Effect from "effect/Effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Stream from "effect/Stream"
import type { Events } from "../services/Events.ts"
import { toJson } from "../ui/render.ts"

/** A comment line now and then, so that nothing between the page and the node closes an idle stream. */
export const KEEP_ALIVE = "15 seconds"

/** One event as its SSE frame. JSON has no raw line breaks (toJson escapes U+2028/9 too). */
export const frame = (event: unknown): string => `data: ${toJson(event)}\n\n`

export const HELLO = "retry: 2000\nevent: hello\ndata: {}\n\n"

export const live = (events: Events["Service"]) =>
  HttpServerResponse.stream(
    Stream.unwrap(Effect.map(events.subscribe, (subscribed) =>
      Stream.concat(
        Stream.make(HELLO),
        Stream.merge(
          Stream.map(subscribed, frame),
          Stream.map(Stream.tick(KEEP_ALIVE), () => ": keep-alive\n\n"),
          { haltStrategy: "left" }
        )
      ))).pipe(Stream.encodeText),
    { contentType: "text/event-stream; charset=utf-8", headers: { "x-accel-buffering": "no" } }
  )
