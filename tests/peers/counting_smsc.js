#!/usr/bin/env node
// A small counting SMSC on the npm `smpp` package, for benches that put two gateways (smsgw and
// Kannel) in front of the same kind of SMSC. Install with `npm ci --prefix tests/peers`.
//
//   node tests/peers/counting_smsc.js --port P --http-port H [--receipts] [--receipt-delay-ms 20]
//
// Binds any system_id/password (transceiver, transmitter or receiver), answers every submit_sm with a
// fresh message_id and counts it. With --receipts, a submit_sm that asks for a delivery receipt
// (registered_delivery bit 0) gets a DELIVRD receipt (text form, plus the TLVs) on a receiving bind of
// the same connection after --receipt-delay-ms. Logs nothing per message (it must not be the
// bottleneck); prints "listening P H" once both ports listen.
// GET http://127.0.0.1:H/count -> {"submits", "receipts_sent", "receipts_answered", "binds",
//                                  "connections", "sessions", "dlr_callbacks"}
// GET http://127.0.0.1:H/dlr?... -> 200 "ok", counted in dlr_callbacks: a place for a gateway's own
// delivery-report callback (Kannel's dlr-url) to land, so a bench can see those come back too.
// Both ports listen on 127.0.0.1 only. Exits on SIGTERM.
'use strict';

const http = require('http');
const smpp = require('smpp');

function parseArgs(argv) {
  const opts = { port: 0, httpPort: 0, receipts: false, receiptDelayMs: 20 };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === '--port') opts.port = Number(next());
    else if (a === '--http-port') opts.httpPort = Number(next());
    else if (a === '--receipts') opts.receipts = true;
    else if (a === '--receipt-delay-ms') opts.receiptDelayMs = Number(next());
    else { console.error(`unknown argument ${a}`); process.exit(2); }
  }
  return opts;
}

const opts = parseArgs(process.argv);
const counts = { submits: 0, receipts_sent: 0, receipts_answered: 0, binds: 0, connections: 0, sessions: 0,
  dlr_callbacks: 0 };
let nextId = 0x100000;

function stamp(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}` +
    `${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

function sendReceipt(session, id, source, dest) {
  if (session.closed || !(session.boundAs === 'trx' || session.boundAs === 'rx')) return;
  const now = stamp(new Date());
  session.deliver_sm({
    source_addr_ton: 1, source_addr_npi: 1, source_addr: dest || '', destination_addr: source || '',
    esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
    short_message: Buffer.from(
      `id:${id} sub:001 dlvrd:001 submit date:${now} done date:${now} stat:DELIVRD err:000 text:`, 'ascii'),
    receipted_message_id: id, message_state: 2,
  }, () => { counts.receipts_answered += 1; });
  counts.receipts_sent += 1;
}

const server = smpp.createServer((session) => {
  counts.connections += 1;
  counts.sessions += 1;
  session.boundAs = null;
  const BINDS = { bind_transceiver: 'trx', bind_transmitter: 'tx', bind_receiver: 'rx' };
  for (const [command, as] of Object.entries(BINDS)) {
    session.on(command, (pdu) => {
      counts.binds += 1;
      session.boundAs = as;
      session.send(pdu.response({ system_id: 'counting-smsc' }));
    });
  }
  session.on('submit_sm', (pdu) => {
    if (session.boundAs === 'rx' || session.boundAs === null) {  // only a sending bind may submit
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      return;
    }
    counts.submits += 1;
    const id = (nextId++).toString(16).toUpperCase();
    session.send(pdu.response({ message_id: id }));
    if (opts.receipts && (pdu.registered_delivery & 1)) {
      const { source_addr: source, destination_addr: dest } = pdu;
      setTimeout(() => sendReceipt(session, id, source, dest), opts.receiptDelayMs);
    }
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
  session.on('unknown', (pdu) => session.send(pdu.response()));
  session.on('error', () => {});
  session.on('close', () => { session.closed = true; counts.sessions -= 1; });
});

const web = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/count') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(counts));
  } else if (req.method === 'GET' && req.url.startsWith('/dlr')) {
    counts.dlr_callbacks += 1;
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok');
  } else {
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end('{"error": "not found"}');
  }
});

server.on('error', (e) => { console.error(String(e)); process.exit(1); });
web.on('error', (e) => { console.error(String(e)); process.exit(1); });
server.listen(opts.port, '127.0.0.1', () => {
  web.listen(opts.httpPort, '127.0.0.1', () => {
    process.stdout.write(`listening ${server.address().port} ${web.address().port}\n`);
  });
});
process.on('SIGTERM', () => process.exit(0));
