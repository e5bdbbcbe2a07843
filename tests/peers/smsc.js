#!/usr/bin/env node
// A small SMSC on the npm `smpp` package (node-smpp), the independent peer smsgw's SMPP client is
// tested against. Install with `npm ci --prefix tests/peers`.
//
//   node tests/peers/smsc.js --port P [--mode normal|throttle|drop|badpass|malformed]
//        [--receipt tlv|text|none] [--receipt-id-decimal] [--system-id smsgw] [--password secret]
//        [--drop-after N] [--receipt-delay-ms 20]
//
// Prints "listening P" once ready, then one JSON object per line for what happened (binds, submits
// with the text node-smpp decoded, responses, generic_nacks, drops). Reads JSON commands on stdin:
//   {"cmd": "receipt", "id": "...", "stat": "DELIVRD", "form": "tlv"|"text"}   a receipt for any id
//   {"cmd": "unbind"}                                                          SMSC-initiated unbind
//
// Modes:
//   normal     binds smsgw/secret (ESME_RINVSYSID / ESME_RINVPASWD otherwise), accepts every submit_sm
//   throttle   answers submit_sm #1 and #2 ESME_RTHROTTLED, #3 ESME_RMSGQFUL, then accepts
//   drop       leaves submit_sm unanswered until --drop-after (default 10) are outstanding, then
//              destroys the connection; once: after the client reconnects it behaves normally
//   badpass    refuses every bind with ESME_RINVPASWD
//   malformed  on the first connection answers the first submit_sm with a PDU of an unknown command,
//              then with an unframeable length; later connections behave normally
'use strict';

const smpp = require('smpp');
const readline = require('readline');

function parseArgs(argv) {
  const opts = {
    port: 0, mode: 'normal', receipt: 'tlv', receiptIdDecimal: false, systemId: 'smsgw',
    password: 'secret', dropAfter: 10, receiptDelayMs: 20,
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === '--port') opts.port = Number(next());
    else if (a === '--mode') opts.mode = next();
    else if (a === '--receipt') opts.receipt = next();
    else if (a === '--receipt-id-decimal') opts.receiptIdDecimal = true;
    else if (a === '--system-id') opts.systemId = next();
    else if (a === '--password') opts.password = next();
    else if (a === '--drop-after') opts.dropAfter = Number(next());
    else if (a === '--receipt-delay-ms') opts.receiptDelayMs = Number(next());
    else { console.error(`unknown argument ${a}`); process.exit(2); }
  }
  if (!['normal', 'throttle', 'drop', 'badpass', 'malformed'].includes(opts.mode)) {
    console.error(`unknown mode ${opts.mode}`); process.exit(2);
  }
  if (!['tlv', 'text', 'none'].includes(opts.receipt)) {
    console.error(`unknown receipt form ${opts.receipt}`); process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv);
const emit = (event, fields) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');

let nextId = 0x1000;
let submitCount = 0;
let connections = 0;
let dropped = false;
const sessions = new Set();

function stamp(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}` +
    `${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

function receiverFor(session) {
  if (session.boundAs === 'trx' || session.boundAs === 'rx') return session;
  for (const s of sessions) {
    if ((s.boundAs === 'trx' || s.boundAs === 'rx') && s.systemId === session.systemId) return s;
  }
  for (const s of sessions) if (s.boundAs === 'trx' || s.boundAs === 'rx') return s;
  return null;
}

function sendReceipt(session, id, stat, form, source, dest) {
  const target = session ? receiverFor(session) : null;
  if (!target) { emit('receipt_dropped', { id }); return; }
  const receiptId = opts.receiptIdDecimal ? String(parseInt(id, 16)) : id;
  const params = {
    source_addr_ton: 1, source_addr_npi: 1, source_addr: dest || '',
    destination_addr: source || '', esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
  };
  if (form === 'tlv') {
    const state = { DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8 }[stat] || 7;
    params.short_message = Buffer.alloc(0);
    params.receipted_message_id = receiptId;
    params.message_state = state;
  } else {
    const now = stamp(new Date());
    const err = stat === 'DELIVRD' ? '000' : '001';
    params.short_message = Buffer.from(
      `id:${receiptId} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} submit date:${now} ` +
      `done date:${now} stat:${stat} err:${err} text:`, 'ascii');
  }
  target.deliver_sm(params, (resp) => {
    emit('deliver_sm_resp', { id: receiptId, status: resp.command_status });
  });
  emit('receipt_sent', { id: receiptId, stat, form });
}

function handleSubmit(session, pdu) {
  submitCount += 1;
  const sm = pdu.short_message || {};
  const text = typeof sm.message === 'string' ? sm.message : (sm.message ? sm.message.toString('hex') : '');
  const udh = sm.udh ? sm.udh.map((u) => Buffer.from(u).toString('hex')) : [];
  const info = {
    seq: pdu.sequence_number, source: pdu.source_addr, source_ton: pdu.source_addr_ton,
    dest: pdu.destination_addr, dest_ton: pdu.dest_addr_ton, data_coding: pdu.data_coding,
    esm_class: pdu.esm_class, registered_delivery: pdu.registered_delivery, text, udh,
    connection: session.connectionNo,
  };
  if (opts.mode === 'malformed' && session.connectionNo === 1 && !session.sentGarbage) {
    session.sentGarbage = true;
    emit('submit_held', info);
    const unknown = Buffer.alloc(20);
    unknown.writeUInt32BE(20, 0); unknown.writeUInt32BE(0x00000999, 4);
    unknown.writeUInt32BE(0, 8); unknown.writeUInt32BE(4242, 12); unknown.writeUInt32BE(0xdeadbeef, 16);
    session.socket.write(unknown);
    emit('sent_unknown_command', { seq: 4242 });
    setTimeout(() => {
      session.socket.write(Buffer.from('000000056761726261676521', 'hex'));
      emit('sent_garbage', {});
    }, 100);
    return;
  }
  if (opts.mode === 'drop' && !dropped) {
    session.held = (session.held || 0) + 1;
    emit('submit_held', info);
    if (session.held >= opts.dropAfter) {
      dropped = true;
      emit('drop', { outstanding: session.held });
      session.socket.destroy();
    }
    return;
  }
  if (opts.mode === 'throttle' && submitCount <= 3) {
    const status = submitCount < 3 ? smpp.ESME_RTHROTTLED : smpp.ESME_RMSGQFUL;
    emit('submit_refused', { ...info, status });
    session.send(pdu.response({ command_status: status }));
    return;
  }
  const id = (nextId++).toString(16).toUpperCase();
  emit('submit', { ...info, id });
  session.send(pdu.response({ message_id: id }));
  if ((pdu.registered_delivery & 1) && opts.receipt !== 'none') {
    setTimeout(() => sendReceipt(session, id, 'DELIVRD', opts.receipt, pdu.source_addr, pdu.destination_addr),
      opts.receiptDelayMs);
  }
}

const server = smpp.createServer((session) => {
  connections += 1;
  session.connectionNo = connections;
  session.boundAs = null;
  sessions.add(session);
  emit('connect', { connection: connections });

  const onBind = (as) => (pdu) => {
    let status = 0;
    if (opts.mode === 'badpass') status = smpp.ESME_RINVPASWD;
    else if (pdu.system_id !== opts.systemId) status = smpp.ESME_RINVSYSID;
    else if (pdu.password !== opts.password) status = smpp.ESME_RINVPASWD;
    emit('bind', { as, system_id: pdu.system_id, status, connection: session.connectionNo });
    if (status) {
      session.send(pdu.response({ command_status: status }));
      return;
    }
    session.boundAs = as;
    session.systemId = pdu.system_id;
    session.send(pdu.response({ system_id: 'node-smsc' }));
  };
  session.on('bind_transceiver', onBind('trx'));
  session.on('bind_transmitter', onBind('tx'));
  session.on('bind_receiver', onBind('rx'));
  session.on('submit_sm', (pdu) => {
    if (session.boundAs !== 'trx' && session.boundAs !== 'tx') {
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      return;
    }
    handleSubmit(session, pdu);
  });
  session.on('enquire_link', (pdu) => {
    emit('enquire_link', { seq: pdu.sequence_number });
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    emit('unbind', { connection: session.connectionNo });
    session.send(pdu.response());
    session.close();
  });
  session.on('unbind_resp', () => { emit('unbind_resp', {}); session.close(); });
  session.on('generic_nack', (pdu) => {
    emit('generic_nack', { seq: pdu.sequence_number, status: pdu.command_status });
  });
  session.on('unknown', (pdu) => {
    emit('unknown', { command_id: pdu.command_id });
    session.send(pdu.response());
  });
  session.on('error', (e) => emit('session_error', { error: String(e && e.message) }));
  session.on('close', () => {
    sessions.delete(session);
    emit('close', { connection: session.connectionNo });
  });
});

server.on('error', (e) => { console.error(String(e)); process.exit(1); });
server.listen(opts.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

const last = () => { let s = null; for (const x of sessions) if (x.boundAs) s = x; return s; };
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { emit('bad_command', { line }); return; }
  if (cmd.cmd === 'receipt') {
    sendReceipt(last(), cmd.id, cmd.stat || 'DELIVRD', cmd.form || 'tlv', '', '');
  } else if (cmd.cmd === 'unbind') {
    const s = last();
    if (s) s.unbind();
  } else {
    emit('bad_command', { line });
  }
});
process.on('SIGTERM', () => process.exit(0));
