// A small Node agent for the sandbox tests: answers /health on 127.0.0.1:<port>, and writes
// a heartbeat into its workspace (cwd) so a test sees it could write there.
"use strict";
const http = require("http");
const fs = require("fs");
const port = Number(process.argv[2]);
fs.writeFileSync("node-agent.started", new Date().toISOString() + "\n");
http
  .createServer((req, res) => {
    res.writeHead(req.url === "/health" ? 200 : 404, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ ok: req.url === "/health", node: process.version }));
  })
  .listen(port, "127.0.0.1");
