#!/usr/bin/env python3
"""Independent TinyWeb PBFT client, written only from docs/PROTOCOL.md and docs/vectors/.

  tinyweb_client.py vectors DIR
  tinyweb_client.py submit --node URL --message TEXT --secret HEX64
  tinyweb_client.py verify --node URL [--genesis FILE] [--tamper HEIGHT]

On success the last line of stdout is one JSON object; on failure: a message on stderr, exit 1.
Python 3.11 stdlib + PyNaCl.
"""
import argparse, copy, hashlib, json, os, re, secrets, struct, sys, time
import urllib.error, urllib.request
from typing import NamedTuple, Optional

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey


class Fail(Exception):
    """Any failure: bad input, mismatch, refused request."""


class ChainInvalid(Fail):
    """§10.2 step 4: the first failure names the height and the reason."""
    def __init__(self, height, reason):
        super().__init__(f"height {height}: {reason}")
        self.height, self.reason = height, reason


# PROTOCOL.md §1 conventions, §1.2 quorum, §9 limits
JSON_INTEGER_MAX = 2**53 - 1
NO_ID = 65535
U16, U32, U64 = 2**16 - 1, 2**32 - 1, 2**64 - 1
MAX_PAYLOAD, MAX_TXS, MAX_VALIDATORS, TX_WINDOW_MS = 16384, 512, 64, 600_000
KINDS = {"message": 0, "approve_node": 1, "suspend_node": 2, "readmit_node": 3,
         "evidence": 4, "remove_node": 5}


def quorum(n): return n * 2 // 3 + 1                 # §1.2 (q == n - f; 1 when n = 0)
def faulty(n): return (n - 1) // 3 if n else 0       # §1.2


# ---------------------------------------------------------------- §2 encoding of signing bytes
def u8(x): return struct.pack(">B", x)
def u16(x): return struct.pack(">H", x)
def u32(x): return struct.pack(">I", x)
def u64(x): return struct.pack(">Q", x)
def bstr(b): return u32(len(b)) + b                  # byte string: u32 length, then bytes
def text(s): return bstr(s.encode("utf-8"))
def tag(d): return bstr(b"tinyweb/v1/" + d.encode("ascii"))
def opt_hash(h): return b"\x00" if h is None else b"\x01" + h
def opt_u32(x): return b"\x00" if x is None else b"\x01" + u32(x)
def sig_field(s): return bstr(s)                     # signature inside body bytes: 00000040 + 64
def sha256(b): return hashlib.sha256(b).digest()


# ---------------------------------------------------------------- §1 JSON conventions (strict readers)
_HEX = re.compile(r"[0-9a-fA-F]*")


def hexb(v, n=None, what="hex"):
    if not isinstance(v, str) or len(v) % 2 or not _HEX.fullmatch(v):
        raise Fail(f"{what}: not even-length hex")
    b = bytes.fromhex(v)
    if n is not None and len(b) != n:
        raise Fail(f"{what}: expected {n} bytes, got {len(b)}")
    return b


def integer(v, maxv, what):          # §1: plain JSON numbers, never strings or fractions
    if type(v) is not int or not 0 <= v <= maxv:
        raise Fail(f"{what}: not an integer in 0..{maxv}")
    return v


def obj(v, what, required, optional=(), exact=False):
    if not isinstance(v, dict):
        raise Fail(f"{what}: not a JSON object")
    missing = [k for k in required if k not in v]
    extra = [k for k in v if k not in required and k not in optional]
    if missing or (exact and extra):
        raise Fail(f"{what}: missing keys {missing} / unknown keys {extra}")
    return v


# ---------------------------------------------------------------- §1.1 Ed25519
def verify_sig(pk, msg, sig):
    try:
        VerifyKey(pk).verify(msg, sig)      # libsodium: canonical S, no small-order A/R, cofactorless
        return True
    except (BadSignatureError, ValueError, TypeError):
        return False


def sign(seed, msg): return SigningKey(seed).sign(msg).signature
def public_key(seed): return bytes(SigningKey(seed).verify_key)


# ---------------------------------------------------------------- §3.1 / §4.1 transactions
class Tx(NamedTuple):
    kind: str; payload: bytes; sender: bytes; nonce: int; ts: int; sig: bytes


def parse_tx(j, what="transaction"):
    obj(j, what, ("kind", "payload", "sender", "nonce", "timestampMs", "signature"))  # §7.2: extras ignored
    if j["kind"] not in KINDS:
        raise Fail(f"{what}: unknown kind {j['kind']!r}")
    return Tx(j["kind"], hexb(j["payload"], None, "payload"), hexb(j["sender"], 32, "sender"),
              integer(j["nonce"], U64, "nonce"), integer(j["timestampMs"], U64, "timestampMs"),
              hexb(j["signature"], 64, "signature"))


def _tx_fields(tx): return u8(KINDS[tx.kind]) + bstr(tx.payload) + tx.sender + u64(tx.nonce) + u64(tx.ts)
def tx_hash(tx): return sha256(tag("transaction") + _tx_fields(tx))                          # §3.1 (no chain id)
def tx_signing_bytes(tx, cid): return tag("transaction") + cid + _tx_fields(tx)               # §4.1


def tx_json(tx):                                                                              # §4.1 JSON
    return {"kind": tx.kind, "payload": tx.payload.hex(), "sender": tx.sender.hex(),
            "nonce": tx.nonce, "timestampMs": tx.ts, "signature": tx.sig.hex()}


# ---------------------------------------------------------------- §3.2 Merkle root
def merkle_root(hashes):
    if not hashes:
        return sha256(b"")
    level = [sha256(b"\x00" + h) for h in hashes]
    while len(level) > 1:
        nxt = [sha256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])          # an odd last node moves up unchanged
        level = nxt
    return level[0]


# ---------------------------------------------------------------- §3.3 block header, §4.5 certificate
class Header(NamedTuple):
    version: int; height: int; round: int; prev: bytes; proposer: int; ts: int; tx_root: bytes; vsh: bytes


class Block(NamedTuple):
    header: Header; txs: list; commit: Optional[tuple]; hash_field: Optional[str]


def parse_header(j):
    obj(j, "header", ("version", "height", "round", "prevHash", "proposer", "timestampMs", "txRoot",
                      "validatorSetHash"))
    return Header(integer(j["version"], U16, "version"), integer(j["height"], U64, "height"),
                  integer(j["round"], U32, "round"), hexb(j["prevHash"], 32, "prevHash"),
                  integer(j["proposer"], U16, "proposer"), integer(j["timestampMs"], U64, "timestampMs"),
                  hexb(j["txRoot"], 32, "txRoot"), hexb(j["validatorSetHash"], 32, "validatorSetHash"))


def header_signing_bytes(h):
    return (tag("block_header") + u16(h.version) + u64(h.height) + u32(h.round) + h.prev + u16(h.proposer)
            + u64(h.ts) + h.tx_root + h.vsh)


def block_hash(h): return sha256(header_signing_bytes(h))


def parse_block(j):
    obj(j, "block", ("header", "txs", "commit"), ("hash",))
    if not isinstance(j["txs"], list):
        raise Fail("block: txs is not a list")
    commit = None
    if j["commit"] is not None:
        c = obj(j["commit"], "commit", ("round", "signatures"))
        if not isinstance(c["signatures"], list):
            raise Fail("commit: signatures is not a list")
        sigs = [(integer(obj(e, "signature entry", ("voter", "signature"))["voter"], U16, "voter"),
                 hexb(e["signature"], 64, "signature")) for e in c["signatures"]]
        commit = (integer(c["round"], U32, "commit.round"), sigs)
    return Block(parse_header(j["header"]), [parse_tx(t) for t in j["txs"]], commit, j.get("hash"))


# ---------------------------------------------------------------- §3.4 validator set, §3.5 genesis
def validator_set_bytes(vals):      # vals: iterable of (id, publicKey, address), listed in id order
    vals = sorted(vals)
    return tag("validator_set") + u32(len(vals)) + b"".join(u16(i) + pk + text(a) for i, pk, a in vals)


def validator_set_hash(vals): return sha256(validator_set_bytes(vals))


class Genesis(NamedTuple):
    name: str; time: int; validators: list


def parse_genesis(j):
    obj(j, "genesis", ("chainName", "timeMs", "validators"))
    if not isinstance(j["chainName"], str) or not isinstance(j["validators"], list):
        raise Fail("genesis: bad chainName or validators")
    vals = []
    for v in j["validators"]:
        obj(v, "genesis validator", ("id", "publicKey", "address"))
        if not isinstance(v["address"], str):
            raise Fail("genesis validator: address is not text")
        vals.append((integer(v["id"], U16, "id"), hexb(v["publicKey"], 32, "publicKey"), v["address"]))
    return Genesis(j["chainName"], integer(j["timeMs"], U64, "timeMs"), vals)


def genesis_tx_root_bytes(g): return tag("genesis") + text(g.name) + u64(g.time)


def genesis_header(g):              # §3.5: the ids hashed exactly as written
    return Header(1, 0, 0, b"\x00" * 32, 0, g.time, sha256(genesis_tx_root_bytes(g)),
                  validator_set_hash(g.validators))


def chain_id_of(g): return block_hash(genesis_header(g))   # the chain id is the genesis block hash


# ---------------------------------------------------------------- §4.2 - §4.4 consensus messages
def proposal_signing_bytes(cid, height, rnd, bh, valid_round, proposer):
    return tag("proposal") + cid + u64(height) + u32(rnd) + bh + opt_u32(valid_round) + u16(proposer)


def vote_signing_bytes(cid, kind, height, rnd, bh, voter):        # kind: "verification" / "commit"
    return tag(kind + "_vote") + cid + u64(height) + u32(rnd) + opt_hash(bh) + u16(voter)


def new_round_signing_bytes(cid, height, rnd, voter):
    return tag("new_round") + cid + u64(height) + u32(rnd) + u16(voter)


class Vote(NamedTuple):
    kind: str; height: int; round: int; bh: Optional[bytes]; voter: int; sig: bytes


def parse_vote(j, what="vote"):                                   # §4.3 JSON (missing blockHash = nil)
    obj(j, what, ("kind", "height", "round", "voter", "signature"), ("blockHash",))
    if j["kind"] not in ("verification", "commit"):
        raise Fail(f"{what}: bad kind")
    bh = j.get("blockHash")
    return Vote(j["kind"], integer(j["height"], U64, "height"), integer(j["round"], U32, "round"),
                None if bh is None else hexb(bh, 32, "blockHash"), integer(j["voter"], U16, "voter"),
                hexb(j["signature"], 64, "signature"))


def vote_bytes(cid, v): return vote_signing_bytes(cid, v.kind, v.height, v.round, v.bh, v.voter)


# ---------------------------------------------------------------- §5 envelopes
ENVELOPE_KEYS = ("v", "type", "from", "sender", "ts", "body", "signature")


def tx_digest(tx): return tx_hash(tx) + sig_field(tx.sig)                                  # §5.3


def block_digest(b):                                                                        # §5.3
    out = block_hash(b.header)
    if b.commit is None:
        out += b"\x00"
    else:
        out += b"\x01" + u32(b.commit[0]) + u32(len(b.commit[1]))
        out += b"".join(u16(v) + sig_field(s) for v, s in b.commit[1])
    return out + u32(len(b.txs)) + b"".join(tx_digest(t) for t in b.txs)


def body_digest(typ, b):                                                                    # §5.3 table
    if typ == "proposal":
        obj(b, "proposal", ("height", "round", "blockData", "proposer", "signature"), ("validRound",))
        vr = b.get("validRound")
        return (u64(integer(b["height"], U64, "height")) + u32(integer(b["round"], U32, "round"))
                + opt_u32(None if vr is None else integer(vr, U32, "validRound"))
                + u16(integer(b["proposer"], U16, "proposer")) + block_digest(parse_block(b["blockData"]))
                + sig_field(hexb(b["signature"], 64, "signature")))
    if typ in ("verification_vote", "commit_vote"):
        v = parse_vote(b)
        if v.kind + "_vote" != typ:
            raise Fail("vote body of the other kind")
        return (u8(0 if v.kind == "verification" else 1) + u64(v.height) + u32(v.round) + opt_hash(v.bh)
                + u16(v.voter) + sig_field(v.sig))
    if typ == "new_round":
        obj(b, "new_round", ("height", "round", "voter", "signature"))
        return (u64(integer(b["height"], U64, "height")) + u32(integer(b["round"], U32, "round"))
                + u16(integer(b["voter"], U16, "voter")) + sig_field(hexb(b["signature"], 64, "signature")))
    if typ == "transaction":
        return tx_digest(parse_tx(b))
    if typ == "transaction_batch":
        txs = obj(b, typ, ("transactions",), exact=True)["transactions"]
        if not isinstance(txs, list):
            raise Fail("transaction_batch: transactions is not a list")
        return u32(len(txs)) + b"".join(tx_digest(parse_tx(t)) for t in txs)
    if typ == "missing_blocks_request":
        return hexb(obj(b, typ, ("lastHash",))["lastHash"], 32, "lastHash")
    if typ == "missing_blocks":
        if obj(b, typ, ("type",)).get("type") == "no_common_hash":
            return b"\x01"
        blocks = obj(b, typ, ("type", "missingBlocks"))["missingBlocks"]
        return b"\x00" + u32(len(blocks)) + b"".join(block_digest(parse_block(x)) for x in blocks)
    if typ == "entire_chain_request":
        return u64(integer(obj(b, typ, ("fromHeight",))["fromHeight"], U64, "fromHeight"))
    if typ == "chain_page":
        obj(b, typ, ("type", "blocks", "chainLength"))
        return (b"\x02" + u64(integer(b["chainLength"], U64, "chainLength")) + u32(len(b["blocks"]))
                + b"".join(block_digest(parse_block(x)) for x in b["blocks"]))
    if typ == "new_blockchain":
        obj(b, typ, ("chainLength", "lastHash"))
        return u64(integer(b["chainLength"], U64, "chainLength")) + hexb(b["lastHash"], 32, "lastHash")
    if typ == "pending_transactions_request":
        return b""
    if typ == "pending_transactions":
        txs = obj(b, typ, ("pendingTransactions",))["pendingTransactions"]
        return u32(len(txs)) + b"".join(tx_digest(parse_tx(t)) for t in txs)
    raise Fail(f"unknown envelope type {typ!r}")


def envelope_signing_bytes(cid, env):                                                       # §5.2
    obj(env, "envelope", ENVELOPE_KEYS, exact=True)
    if env["v"] != 1 or type(env["v"]) is not int:
        raise Fail("envelope: v is not 1")
    typ = env["type"]
    return (tag("envelope/" + typ) + cid + u16(integer(env["from"], U16, "from"))
            + hexb(env["sender"], 32, "sender") + u64(integer(env["ts"], U64, "ts")) + body_digest(typ, env["body"]))


# ---------------------------------------------------------------- §6 membership
class Invitation(NamedTuple):
    chain_id: bytes; inviter: bytes; joiner: bytes; expires: int; nonce: int; sig: bytes; cosigners: tuple


class Join(NamedTuple):
    pk: bytes; address: str; inv: Invitation


def parse_invitation(j):                                      # §6.1: unknown keys refused
    obj(j, "invitation", ("chainId", "inviter", "joiner", "expiresMs", "nonce", "signature"),
        ("cosigners",), exact=True)
    cos = j.get("cosigners", [])
    if not isinstance(cos, list):
        raise Fail("invitation: cosigners is not a list")
    cos = tuple((hexb(obj(c, "cosigner", ("signer", "signature"), exact=True)["signer"], 32, "signer"),
                 hexb(c["signature"], 64, "signature")) for c in cos)
    return Invitation(hexb(j["chainId"], 32, "chainId"), hexb(j["inviter"], 32, "inviter"),
                      hexb(j["joiner"], 32, "joiner"), integer(j["expiresMs"], U64, "expiresMs"),
                      integer(j["nonce"], U64, "nonce"), hexb(j["signature"], 64, "signature"), cos)


def invitation_signing_bytes(inv):                            # §6.1
    return tag("invitation") + inv.chain_id + inv.inviter + inv.joiner + u64(inv.expires) + u64(inv.nonce)


def parse_join(j):                                            # §6.2: unknown keys refused
    obj(j, "join request", ("publicKey", "address", "invitation"), exact=True)
    if not isinstance(j["address"], str):
        raise Fail("join request: address is not text")
    return Join(hexb(j["publicKey"], 32, "publicKey"), j["address"], parse_invitation(j["invitation"]))


def join_payload(join):                                       # §6.2: compact JSON, keys in spec order
    inv = join.inv
    invj = {"chainId": inv.chain_id.hex(), "inviter": inv.inviter.hex(), "joiner": inv.joiner.hex(),
            "expiresMs": inv.expires, "nonce": inv.nonce, "signature": inv.sig.hex()}
    if inv.cosigners:
        invj["cosigners"] = [{"signer": s.hex(), "signature": g.hex()} for s, g in inv.cosigners]
    d = {"publicKey": join.pk.hex(), "address": join.address, "invitation": invj}
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def new_node_signing_bytes(join, ts):                         # §6.3
    return (tag("new_node") + join.inv.chain_id + bstr(join.inv.sig) + join.pk + text(join.address) + u64(ts))


def parse_payload_json(payload, what):
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Fail(f"{what}: payload is not UTF-8 JSON")


def parse_evidence(payload):                                  # §6.5
    j = obj(parse_payload_json(payload, "evidence"), "evidence", ("first", "second"))
    return parse_vote(j["first"], "first"), parse_vote(j["second"], "second")


# ---------------------------------------------------------------- §10 offline verification
class ChainVerifier:
    def __init__(self, genesis_json):                         # §10.2 step 2, §10.3 initial state
        self.genesis = parse_genesis(genesis_json)
        g = self.genesis
        for pos, (i, _, _) in enumerate(g.validators):
            if i != pos:
                raise Fail(f"genesis validator at position {pos} has id {i} (§3.5: id MUST equal position)")
        self.cid = chain_id_of(g)
        self.validators = list(g.validators[:MAX_VALIDATORS])
        self.key_id = {}
        for i, pk, _ in self.validators:
            self.key_id.setdefault(pk, i)
        self.joined_at = {i: 1 for i, _, _ in self.validators}
        self.left_at = {}
        self.height, self.last_hash, self.last_ts, self.last_proposer = 0, self.cid, g.time, 0
        self.vsh = validator_set_hash(self._vals(self.registered_at(1)))
        self.suspended, self.convicted = set(), set()
        self.turns = {}                         # id -> [missed, benchedTimes, benchedFrom, benchedUntil]
        self.requests = {}                      # op -> [set of requester ids, first height]
        self.recent = {}                        # tx hash -> timestampMs
        self.used_inv, self.last_join = set(), {}
        self.tx_count = 0

    # §10.3 derived sets
    def _vals(self, ids): return [self.validators[i] for i in sorted(ids)]
    def registered_at(self, x):
        return {i for i, _, _ in self.validators
                if self.joined_at[i] <= x and (i not in self.left_at or x < self.left_at[i])}
    def turn(self, i): return self.turns.setdefault(i, [0, 0, 0, 0])
    def benched(self, H): return {i for i, t in self.turns.items() if t[2] <= H < t[3]}
    def rotation(self, H): return self.registered_at(H) - self.suspended - self.benched(H)
    def vouchers(self, H): return self.registered_at(H) - self.suspended - self.convicted
    def id_of(self, key): return self.key_id.get(key)

    # §10.4 proposer of a round
    def _nth_after(self, ids, off):
        ids = sorted(ids)
        if not ids:
            return None
        start = next((k for k, i in enumerate(ids) if i > self.last_proposer), 0)
        return ids[(start + off % len(ids)) % len(ids)]

    def proposer(self, r, H):
        rot = self.rotation(H)
        p = self._nth_after(rot, r) if r < len(rot) else self._nth_after(self.registered_at(H), r - len(rot))
        return self.last_proposer if p is None else p

    # §10.5 verifyCertificate
    def verify_certificate(self, blk, bh, H):
        rnd, entries = blk.commit
        reg, signers = self.registered_at(H), set()
        for voter, sig in entries:
            if voter not in reg or voter in signers:
                continue                                   # skipped: not verified, not counted
            msg = vote_signing_bytes(self.cid, "commit", H, rnd, bh, voter)   # commit.round, never header round
            if not verify_sig(self.validators[voter][1], msg, sig):
                raise ChainInvalid(H, f"certificate signature by {voter}")
            signers.add(voter)
        q = quorum(len(reg))
        if len(signers) < q:
            raise ChainInvalid(H, f"certificate has {len(signers)} valid signatures, quorum is {q}")

    # §10.5 checkJoin; returns None when it passes, else the reason
    def check_join(self, join, t, H):
        inv, vouch, n = join.inv, self.vouchers(H), len(self.registered_at(H))
        inviter = self.id_of(inv.inviter)
        if inv.joiner != join.pk: return "invitation is for another key"
        if inv.chain_id != self.cid: return "invitation is for another chain"
        if inviter not in vouch: return "inviter is not a voucher"
        if len(inv.cosigners) >= n: return "too many cosigners"
        ids = {self.id_of(k) for k in [inv.inviter] + [s for s, _ in inv.cosigners]}
        if len(ids & vouch) < faulty(n) + 1: return "fewer than f + 1 vouchers"
        msg = invitation_signing_bytes(inv)
        if not verify_sig(inv.inviter, msg, inv.sig) or not all(verify_sig(s, msg, g) for s, g in inv.cosigners):
            return "bad invitation signature"
        if t > inv.expires: return "invitation expired"
        if (inviter, inv.nonce) in self.used_inv: return "invitation already used"
        if inviter in self.last_join and t < self.last_join[inviter] + 3_600_000: return "inviter joined one within the hour"
        if self.id_of(join.pk) is not None: return "key already admitted"
        if len(self.validators) >= MAX_VALIDATORS: return "64 validators already admitted"
        return None

    # §10.5 validateTx
    def validate_tx(self, tx, t, H):
        if len(tx.payload) > MAX_PAYLOAD: return "payload too large"
        if abs(tx.ts - t) > TX_WINDOW_MS: return "timestamp outside ±10 min of the block"
        if tx.kind != "message":
            sid = self.id_of(tx.sender)
            if sid is None or sid not in self.registered_at(H) or sid in self.convicted:
                return "membership request by a non-validator"
            try:
                if tx.kind == "evidence":
                    a, b = parse_evidence(tx.payload)
                    if (a.voter, a.kind, a.height, a.round) != (b.voter, b.kind, b.height, b.round) or a.bh == b.bh:
                        return "evidence votes do not conflict"
                    if a.voter >= len(self.validators): return "evidence against an unknown validator"
                    pk = self.validators[a.voter][1]
                    if not (verify_sig(pk, vote_bytes(self.cid, a), a.sig) and verify_sig(pk, vote_bytes(self.cid, b), b.sig)):
                        return "evidence signature does not verify"
                elif tx.kind == "approve_node":
                    join = parse_join(parse_payload_json(tx.payload, "approve_node"))
                    if not 1 <= len(join.address.encode("utf-8")) <= 256: return "join address length"
                    why = self.check_join(join, t, H)
                    if why: return f"join refused: {why}"
                elif len(tx.payload) != 32:
                    return f"{tx.kind} payload is not a 32-byte key"
            except Fail as e:
                return f"malformed {tx.kind} payload: {e}"
        if tx_hash(tx) in self.recent: return "already committed"
        if not verify_sig(tx.sender, tx_signing_bytes(tx, self.cid), tx.sig): return "bad transaction signature"
        return None

    # §10.5 validateBlock
    def validate_block(self, blk, H):
        hdr = blk.header
        checks = [(hdr.version == 1, "version is not 1"), (hdr.height == H, f"header height {hdr.height}"),
                  (hdr.prev == self.last_hash, "prevHash does not link to the previous block")]
        for ok, why in checks:
            if not ok: raise ChainInvalid(H, why)
        p = self.proposer(hdr.round, H)
        if hdr.proposer != p: raise ChainInvalid(H, f"proposer {hdr.proposer}, expected {p}")
        if hdr.ts < self.last_ts: raise ChainInvalid(H, "timestamp before the previous block")
        if hdr.vsh != self.vsh: raise ChainInvalid(H, "validatorSetHash mismatch")
        if len(blk.txs) > MAX_TXS: raise ChainInvalid(H, "too many transactions")
        hashes = [tx_hash(t) for t in blk.txs]
        if hdr.tx_root != merkle_root(hashes): raise ChainInvalid(H, "txRoot mismatch")
        if len(set(hashes)) != len(hashes): raise ChainInvalid(H, "duplicate transaction")
        for k, tx in enumerate(blk.txs):
            why = self.validate_tx(tx, hdr.ts, H)
            if why: raise ChainInvalid(H, f"transaction {k}: {why}")

    # §10.6 applying a block (membership replay)
    def apply_block(self, blk, bh, h):
        hdr, t = blk.header, blk.header.ts
        reg_h = self.registered_at(h)
        q0, rot_len = quorum(len(reg_h)), len(self.rotation(h))
        failed = {self.proposer(r, h) for r in range(hdr.round)} if hdr.round < rot_len else set()
        new_susp = set(self.suspended)
        for tx in blk.txs:
            self.recent[tx_hash(tx)] = tx.ts
            req = self.id_of(tx.sender)
            if req is None or tx.kind == "message":
                continue
            if tx.kind == "evidence":
                off = parse_evidence(tx.payload)[0].voter
                self.convicted.add(off); new_susp.add(off)
                continue
            join = parse_join(parse_payload_json(tx.payload, "approve_node")) if tx.kind == "approve_node" else None
            op = (tx.kind, join if join else tx.payload)
            if op not in self.requests:
                if sum(req in r[0] for r in self.requests.values()) >= 8 or len(self.requests) >= 512:
                    continue
                self.requests[op] = [set(), h]
            self.requests[op][0].add(req)
            if len((self.requests[op][0] - self.convicted) & reg_h) < q0:
                continue
            del self.requests[op]
            if join:
                if self.check_join(join, t, h) is not None:
                    continue                                          # the join is dropped
                if self.id_of(join.pk) is None and len(self.validators) < MAX_VALIDATORS:
                    new_id, inviter = len(self.validators), self.id_of(join.inv.inviter)
                    self.used_inv.add((inviter, join.inv.nonce)); self.last_join[inviter] = t
                    self.validators.append((new_id, join.pk, join.address))
                    self.key_id[join.pk] = new_id; self.joined_at[new_id] = h + 1
                    self.vsh = validator_set_hash(self._vals(self.registered_at(h + 1)))
                continue
            x = self.id_of(tx.payload)
            if x is None:
                continue
            if tx.kind == "suspend_node" and x in reg_h:
                new_susp.add(x)
            elif tx.kind == "readmit_node" and x not in self.convicted:
                new_susp.discard(x)
            elif tx.kind == "remove_node":
                r_next = self.registered_at(h + 1)
                if x in r_next and len(r_next) > 1:
                    self.left_at[x] = h + 1; new_susp.discard(x)
                    self.vsh = validator_set_hash(self._vals(self.registered_at(h + 1)))
        self.requests = {op: r for op, r in self.requests.items() if h - r[1] < 100}
        self.recent = {k: ts for k, ts in self.recent.items() if ts >= t - TX_WINDOW_MS}
        remaining = rot_len
        for i in sorted(failed - {hdr.proposer}):
            tr = self.turn(i)
            tr[0] += 1
            if tr[0] >= (1 if tr[1] > 0 else 2) and remaining > q0:
                remaining -= 1
                length = min(64 * 2 ** min(tr[1], 20), 4096)
                tr[2], tr[3], tr[1], tr[0] = h + 1, h + 1 + length, tr[1] + 1, 0
        self.turns[hdr.proposer] = [0, 0, 0, 0]
        self.height, self.last_hash, self.last_ts, self.last_proposer = h, bh, t, hdr.proposer
        self.suspended = new_susp

    # §10.2 step 3, one element of `blocks`
    def verify_block(self, j):
        H = self.height + 1
        try:
            blk = parse_block(j)                                                   # 3.1
        except Fail as e:
            raise ChainInvalid(H, f"not a block: {e}")
        bh = block_hash(blk.header)
        if blk.hash_field is not None and blk.hash_field != bh.hex():              # 3.2
            raise ChainInvalid(H, "hash field is not the header hash")
        if blk.commit is None:                                                     # 3.3
            raise ChainInvalid(H, "no certificate")
        self.verify_certificate(blk, bh, H)                                        # 3.4
        self.validate_block(blk, H)                                                # 3.5
        self.apply_block(blk, bh, H)                                               # 3.6
        self.tx_count += len(blk.txs)


def verify_export(export):
    v = ChainVerifier(obj(export, "export", ("genesis", "blocks"))["genesis"])
    for b in export["blocks"]:
        v.verify_block(b)
    return v


def tamper_certificate(block_json):
    """Copy of a block with one flipped byte in its first certificate signature."""
    b = copy.deepcopy(block_json)
    s = bytearray(bytes.fromhex(b["commit"]["signatures"][0]["signature"]))
    s[0] ^= 0x01
    b["commit"]["signatures"][0]["signature"] = s.hex()
    return b


# ---------------------------------------------------------------- vectors (§12)
class Checker:
    def __init__(self): self.n = 0

    def eq(self, what, got, want):
        if isinstance(got, bytes): got = got.hex()
        if isinstance(want, bytes): want = want.hex()
        if got != want:
            raise Fail(f"vector mismatch: {what}: computed {got}, vector says {want}")
        self.n += 1

    def signed(self, what, seeds, signer_hex, msg, sig_hex, sha_hex=None):
        """signingBytes → sha256, verify, and re-sign with the seed (Ed25519 is deterministic)."""
        if sha_hex is not None: self.eq(what + " signingBytesSha256", sha256(msg), sha_hex)
        self.eq(what + " verifies", verify_sig(bytes.fromhex(signer_hex), msg, bytes.fromhex(sig_hex)), True)
        self.eq(what + " re-signed", sign(seeds[signer_hex], msg), sig_hex)


def encoding_example(name):     # §2: inputs are named in the example's name
    e = sha256(b"")
    fields = {"domain tag only": b"", "u8 7": u8(7), "u16 513": u16(513), "u32 70000": u32(70000),
              "u64 1700000000000": u64(1700000000000), 'bytes "hi"': bstr(b"hi"),
              'hash sha256("")': e, "optional hash, absent": opt_hash(None),
              'optional hash sha256(""), present': opt_hash(e), "optional u32, absent": opt_u32(None),
              "optional u32 3, present": opt_u32(3)}
    if name not in fields:
        raise Fail(f"encoding example {name!r} not understood")
    return tag("example") + fields[name]


def run_vectors(d):
    ld = lambda f: json.load(open(os.path.join(d, f)))
    c = Checker()
    keys = ld("keys.json")["keys"]
    seeds = {}
    for k in keys:                                                     # §1.1 seed → public key
        c.eq(f"keys {k['name']}", public_key(bytes.fromhex(k["secret"])), k["publicKey"])
        seeds[k["publicKey"]] = bytes.fromhex(k["secret"])
    for i in range(4):                                                 # §12: seed = 0x11 × (i + 1)
        c.eq(f"validator {i} seed", seeds[keys[i]["publicKey"]], bytes([0x11 * (i + 1)]) * 32)

    for ex in ld("encoding.json")["examples"]:                         # §2
        c.eq(f"encoding {ex['name']}", encoding_example(ex["name"]), ex["bytes"])

    hs = ld("hashes.json")                                             # §3.2, §3.4, §3.5
    for k, case in enumerate(hs["merkle"]["cases"]):
        leaves = [bytes.fromhex(x) for x in case["leaves"]]
        for i, leaf in enumerate(leaves):
            c.eq(f"merkle case {k} leaf {i}", sha256(f"tx{i}".encode()), leaf)
        c.eq(f"merkle case {k} root", merkle_root(leaves), case["root"])
    vs = hs["validatorSet"]
    vals = parse_genesis({"chainName": "", "timeMs": 0, "validators": vs["validators"]}).validators
    c.eq("validatorSet signingBytes", validator_set_bytes(vals), vs["signingBytes"])
    c.eq("validatorSet hash", validator_set_hash(vals), vs["hash"])
    gv = hs["genesis"]
    g = parse_genesis(gv["file"])
    gh = genesis_header(g)
    c.eq("genesis txRootSigningBytes", genesis_tx_root_bytes(g), gv["txRootSigningBytes"])
    c.eq("genesis txRoot", gh.tx_root, gv["txRoot"])
    c.eq("genesis header", parse_header(gv["header"]), gh)
    c.eq("genesis headerSigningBytes", header_signing_bytes(gh), gv["headerSigningBytes"])
    c.eq("genesis chainId", chain_id_of(g), gv["chainId"])
    cid = chain_id_of(g)

    tv = ld("transactions.json")                                       # §3.1, §4.1
    c.eq("transactions chainId", cid, tv["chainId"])
    for t in tv["transactions"]:
        tx, w = parse_tx(t["json"]), f"transaction {t['name']}"
        sb = tx_signing_bytes(tx, cid)
        c.eq(w + " kindCode", KINDS[tx.kind], t["kindCode"])
        c.eq(w + " signingBytes", sb, t["signingBytes"])
        c.eq(w + " hash", tx_hash(tx), t["hash"])
        c.eq(w + " hash = sha256(signingBytes without chain id)", sha256(sb[:26] + sb[58:]), t["hash"])
        c.eq(w + " signer", tx.sender.hex(), t["signer"])
        c.eq(w + " json signature", tx.sig.hex(), t["signature"])
        c.signed(w, seeds, t["signer"], sb, t["signature"], t["signingBytesSha256"])
        c.eq(w + " json round trip", tx_json(tx), t["json"])

    cv = ld("consensus.json")                                          # §3.3, §4.2 - §4.4
    c.eq("consensus chainId", cid, cv["chainId"])
    hdr = parse_header(cv["header"]["json"])
    c.eq("header signingBytes", header_signing_bytes(hdr), cv["header"]["signingBytes"])
    c.eq("header hash", block_hash(hdr), cv["header"]["hash"])
    for m in cv["messages"]:
        j, w = m["json"], f"consensus {m['name']}"
        if "blockData" in j:                                           # proposal
            blk = parse_block(j["blockData"])
            c.eq(w + " txRoot", merkle_root([tx_hash(t) for t in blk.txs]), blk.header.tx_root)
            for t in blk.txs:
                c.eq(w + " tx signature", verify_sig(t.sender, tx_signing_bytes(t, cid), t.sig), True)
            sb = proposal_signing_bytes(cid, j["height"], j["round"], block_hash(blk.header),
                                        j["validRound"], j["proposer"])
        elif "kind" in j:                                              # verification / commit vote
            sb = vote_bytes(cid, parse_vote(j))
        else:                                                          # new-round vote
            sb = new_round_signing_bytes(cid, j["height"], j["round"], j["voter"])
        c.eq(w + " signingBytes", sb, m["signingBytes"])
        c.eq(w + " json signature", j["signature"], m["signature"])
        c.signed(w, seeds, m["signer"], sb, m["signature"], m["signingBytesSha256"])

    ev = ld("envelopes.json")                                          # §5
    c.eq("envelopes chainId", cid, ev["chainId"])
    c.eq("noIdYet", NO_ID, ev["noIdYet"])
    for e in ev["envelopes"]:
        j, w = e["json"], f"envelope {e['type']}"
        c.eq(w + " type", j["type"], e["type"])
        digest = body_digest(j["type"], j["body"])
        sb = envelope_signing_bytes(cid, j)
        c.eq(w + " bodyDigest", digest, e["bodyDigest"])
        c.eq(w + " signingBytes", sb, e["signingBytes"])
        c.eq(w + " messageId", sha256(sb), e["messageId"])
        c.signed(w, seeds, j["sender"], sb, j["signature"])
        b = j["body"]                                                  # the body's own signatures
        blocks = b.get("missingBlocks", b.get("blocks", []))
        if j["type"] in ("verification_vote", "commit_vote"):
            c.eq(w + " vote signature", verify_sig(bytes.fromhex(j["sender"]), vote_bytes(cid, parse_vote(b)),
                                                   hexb(b["signature"], 64)), True)
        for bj in blocks:                                              # certificates of carried blocks
            v = ChainVerifier(gv["file"])
            blk = parse_block(bj)
            v.verify_certificate(blk, block_hash(blk.header), blk.header.height)
            c.n += 1

    mv = ld("membership.json")                                         # §6
    c.eq("membership chainId", cid, mv["chainId"])
    iv = mv["invitation"]
    inv = parse_invitation(iv["json"])
    sb = invitation_signing_bytes(inv)
    c.eq("invitation signingBytes", sb, iv["signingBytes"])
    c.eq("invitation signer", inv.inviter.hex(), iv["signer"])
    c.eq("invitation json signature", inv.sig.hex(), iv["signature"])
    c.signed("invitation", seeds, iv["signer"], sb, iv["signature"], iv["signingBytesSha256"])
    for s, g2 in inv.cosigners:
        c.signed("invitation cosigner", seeds, s.hex(), sb, g2.hex())
    seeds[public_key(bytes.fromhex(mv["joinerSecret"])).hex()] = bytes.fromhex(mv["joinerSecret"])
    c.eq("joinerSecret → joiner", public_key(bytes.fromhex(mv["joinerSecret"])), inv.joiner)
    nn = mv["newNodeRequest"]
    obj(nn["json"], "/NewNode request", ("join", "ts", "signature"), exact=True)
    join = parse_join(nn["json"]["join"])
    c.eq("newNodeRequest invitation", join.inv, inv)
    sb = new_node_signing_bytes(join, nn["json"]["ts"])
    c.eq("newNodeRequest signingBytes", sb, nn["signingBytes"])
    c.eq("newNodeRequest signer", join.pk.hex(), nn["signer"])
    c.eq("newNodeRequest json signature", nn["json"]["signature"], nn["signature"])
    c.signed("newNodeRequest", seeds, nn["signer"], sb, nn["signature"], nn["signingBytesSha256"])
    payload = bytes.fromhex(mv["approveNodePayload"]["hex"])
    c.eq("approveNodePayload", join_payload(join), payload)
    c.eq("approveNodePayload parses to the join request",
         parse_join(parse_payload_json(payload, "approve_node")), join)
    gen_v = ChainVerifier(gv["file"])                                  # checkJoin against the genesis state
    c.eq("invitation passes checkJoin at its time", gen_v.check_join(join, nn["json"]["ts"], 1), None)

    export = ld("chain.json")["export"]                                # §10
    v = verify_export(export)
    c.eq("chain.json chainId", v.cid, cid)
    c.eq("chain.json tip", v.height, len(export["blocks"]))
    c.eq("chain.json certificate round ≠ header round in block 3",
         (export["blocks"][2]["header"]["round"], export["blocks"][2]["commit"]["round"]), (0, 1))
    for k in range(len(export["blocks"])):                             # the verifier must fail, at that height
        bad = copy.deepcopy(export)
        bad["blocks"][k] = tamper_certificate(bad["blocks"][k])
        try:
            verify_export(bad)
            raise Fail(f"tampered chain.json block {k + 1} verified")
        except ChainInvalid as e:
            c.eq(f"tampered chain.json reported at", (e.height, e.reason.startswith("certificate signature")),
                 (k + 1, True))
    return c.n


# ---------------------------------------------------------------- §7 HTTP API
def http(method, url, body=None, timeout=10.0, retries=20):
    """One request; 503 busy/unavailable (§8, Retry-After: 1) is retried a few times."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    for _ in range(retries):
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw, hdrs = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, raw, hdrs = e.code, e.read(), e.headers
        except (urllib.error.URLError, OSError) as e:
            raise Fail(f"{method} {url}: cannot reach the node: {e}")
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            raise Fail(f"{method} {url}: answer is not JSON ({status})")
        if status == 503:
            time.sleep(float(hdrs.get("Retry-After", "1") or 1))
            continue
        return status, answer
    raise Fail(f"{method} {url}: still 503 after {retries} tries: {answer}")


def get_ok(node, path):
    status, ans = http("GET", node.rstrip("/") + path)
    if status != 200:
        raise Fail(f"GET {path}: HTTP {status}: {ans}")
    return ans


def get_chain_id(node):                                       # §7.2 step 1
    cid = chain_id_of(parse_genesis(get_ok(node, "/genesis")))
    st = get_ok(node, "/status")                              # cross-check with /status chainId
    if hexb(st.get("chainId"), 32, "status chainId") != cid:
        raise Fail(f"/status chainId {st.get('chainId')} differs from the chain id of /genesis {cid.hex()}")
    return cid


def cmd_submit(node, message, secret_hex):                    # §7.2
    seed = hexb(secret_hex, 32, "--secret")
    cid = get_chain_id(node)
    payload = message.encode("utf-8")
    if len(payload) > MAX_PAYLOAD:
        raise Fail("message longer than 16 384 bytes")
    tx = Tx("message", payload, public_key(seed), secrets.randbelow(JSON_INTEGER_MAX + 1),
            int(time.time() * 1000), b"")
    tx = tx._replace(sig=sign(seed, tx_signing_bytes(tx, cid)))                  # §4.1
    h = tx_hash(tx).hex()                                                        # §3.1
    status, ans = http("POST", node.rstrip("/") + "/Transaction", tx_json(tx))   # bare transaction, no envelope
    if status != 200 or not isinstance(ans, dict) or ans.get("accepted") is not True:
        raise Fail(f"POST /Transaction refused: HTTP {status}: {ans}")
    if str(ans.get("txHash", "")).lower() != h:
        raise Fail(f"node's txHash {ans.get('txHash')} differs from ours {h}")
    deadline = time.monotonic() + 30.0                                           # §7.2 step 6
    while time.monotonic() < deadline:
        st = get_ok(node, f"/Transaction/{h}")
        if st.get("status") == "committed":
            return {"txHash": h, "accepted": True, "height": integer(st.get("height"), U64, "height")}
        time.sleep(0.1)
    raise Fail(f"transaction {h} not committed within 30 s")


def genesis_equal(a, b):                                      # §10.2 step 1: same name, time, validators
    return parse_genesis(a) == parse_genesis(b)


def cmd_verify(node, genesis_file=None, tamper=None):         # §10.2 against a live node
    genesis = get_ok(node, "/genesis")
    if genesis_file:
        with open(genesis_file) as f:
            given = json.load(f)
        if not genesis_equal(given, genesis):
            raise Fail(f"the node is on chain {chain_id_of(parse_genesis(genesis)).hex()}, but the genesis "
                       f"file given is of chain {chain_id_of(parse_genesis(given)).hex()}")
        genesis = given
    v = ChainVerifier(genesis)
    b0 = get_ok(node, "/Block/0")                             # §7.3: 0 = genesis block, its hash = chain id
    if b0.get("hash") != v.cid.hex() or block_hash(parse_header(b0["header"])) != v.cid:
        raise Fail("the node's block 0 is not the genesis block of this genesis file")
    last = get_ok(node, "/BlockChainLastHash")
    tip = integer(last.get("height"), U64, "height")
    for h in range(1, tip + 1):
        b = get_ok(node, f"/Block/{h}")
        if tamper == h:
            b = tamper_certificate(b)
        v.verify_block(b)
    if v.last_hash.hex() != str(last.get("lastHash")).lower():
        raise Fail(f"block {tip} hash differs from the node's lastHash")
    return {"verifiedHeight": v.height, "transactions": v.tx_count}


def main(argv=None):
    ap = argparse.ArgumentParser(description="TinyWeb PBFT client (PROTOCOL.md wire version 1)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("vectors", help="recompute every value of docs/vectors/*.json")
    p.add_argument("dir")
    p = sub.add_parser("submit", help="sign and submit a message transaction, wait for its commit")
    p.add_argument("--node", required=True); p.add_argument("--message", required=True)
    p.add_argument("--secret", required=True, help="32-byte Ed25519 seed, hex")
    p = sub.add_parser("verify", help="fetch a node's chain and verify it offline (§10)")
    p.add_argument("--node", required=True); p.add_argument("--genesis")
    p.add_argument("--tamper", type=int, help=argparse.SUPPRESS)   # flip a certificate byte at this height
    a = ap.parse_args(argv)
    try:
        if a.cmd == "vectors":
            out = {"vectorsChecked": run_vectors(a.dir)}
        elif a.cmd == "submit":
            out = cmd_submit(a.node, a.message, a.secret)
        else:
            out = cmd_verify(a.node, a.genesis, a.tamper)
    except ChainInvalid as e:
        print(f"error: chain invalid at height {e.height}: {e.reason}", file=sys.stderr)
        return 1
    except (Fail, OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {type(e).__name__ + ': ' if not isinstance(e, Fail) else ''}{e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
