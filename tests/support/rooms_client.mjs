// rooms.js's RoomClient under Node (its global WebSocket): types messages into a room and reports.
//
//   node --experimental-websocket tests/support/rooms_client.mjs ROOMS_JS_URL BASE_URL PATH COUNT EVERY_MS
//
// Prints one JSON object per line: {"event": "open"|"ack"|"unavailable"|"typed"|"done", ...}.
// Reads lines on stdin: "go" types the next message (the test paces the typing),
// "finish" waits until nothing is unacknowledged, prints {"event": "done"} and exits.
import {createInterface} from "node:readline";

const [roomsJs, base, path] = process.argv.slice(2);
const url = new URL(base);
globalThis.location = {protocol: url.protocol, host: url.host, href: url.href};
globalThis.addEventListener = globalThis.removeEventListener = () => {};
// A page of the site would send its Origin; undici's WebSocket takes it as a header.
const PageWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class extends PageWebSocket {
  constructor(address) { super(address, {headers: {Origin: url.origin}}); }
};
const {RoomClient} = await import(roomsJs);

const say = (event, detail = {}) => process.stdout.write(JSON.stringify({event, ...detail}) + "\n");
const client = new RoomClient(path, {minDelay: 200, maxDelay: 1000, clientKey: "node-typist"});
client.addEventListener("status", ({detail}) => say(detail.state === "open" ? "open" : "status", detail));
client.addEventListener("ack", ({detail}) => say("ack", {id: detail.id, seq: detail.seq}));
client.addEventListener("frame", ({detail}) => {
  if (detail.data?.error === "history_unavailable") say("unavailable", {ids: detail.data.ids ?? []});
});
client.connect();

let typed = 0;
for await (const line of createInterface({input: process.stdin})) {
  if (line === "go") {
    const text = `m${String(typed++).padStart(3, "0")}`;
    client.send({text});
    say("typed", {text, unacked: client.unacked});
  } else if (line === "finish") {
    while (client.unacked) await new Promise((resolve) => setTimeout(resolve, 50));
    say("done", {typed});
    client.close();
    process.exit(0);
  }
}
