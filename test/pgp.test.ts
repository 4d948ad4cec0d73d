import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as openpgp from 'openpgp';
import { verifyPgp } from '../src/auth/pgp';
import { tempDir } from './support/env';

// Keys are made at test time (ed25519: milliseconds).
async function makeKey(email: string, extra: Partial<Parameters<typeof openpgp.generateKey>[0]> = {}) {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'ecc',
    userIDs: [{ name: email.split('@')[0], email }],
    format: 'armored',
    ...extra,
  } as Parameters<typeof openpgp.generateKey>[0] & { format: 'armored' });
  const priv = await openpgp.readPrivateKey({ armoredKey: privateKey as string });
  return { priv, armoredPublic: publicKey as string, armoredPrivate: privateKey as string, keyId: priv.getKeyID().toHex() };
}

const ops = makeKey('ops@example.com');
const eve = makeKey('eve@example.net');

const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n');

const INNER = crlf(
  'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n' +
    'db tables\ndb query name=3Dhost hostname=3D"web-ams-01"\n# caf=C3=A9\n',
);
const SIGNED_TEXT = 'db tables\ndb query name=host hostname="web-ams-01"\n# café\n';

async function detach(data: string, key: openpgp.PrivateKey, mode: 'binary' | 'text' = 'binary', date?: Date): Promise<string> {
  const message = mode === 'binary'
    ? await openpgp.createMessage({ binary: new Uint8Array(Buffer.from(data, 'latin1')) })
    : await openpgp.createMessage({ text: data });
  return (await openpgp.sign({ message, signingKeys: key, detached: true, ...(date ? { date } : {}) })) as string;
}

function pgpMime(inner: string, signature: string, { extraPart = '', protocol = 'application/pgp-signature' } = {}): Buffer {
  return Buffer.from(
    crlf(
      'From: Ops <ops@example.com>\nTo: agent@example.com\nSubject: signed\nMIME-Version: 1.0\n' +
        `Content-Type: multipart/signed; micalg=pgp-sha512;\n protocol="${protocol}"; boundary="----sig-b1"\n\n` +
        'This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\n' +
        '------sig-b1\n',
    ) +
      inner +
      crlf(
        '\n------sig-b1\nContent-Type: application/pgp-signature; name="signature.asc"\n' +
          'Content-Description: OpenPGP digital signature\nContent-Disposition: attachment; filename="signature.asc"\n\n' +
          `${signature}\n` +
          extraPart +
          '------sig-b1--\n',
      ),
    'latin1',
  );
}

test('PGP/MIME: a valid signature passes with exactly the decoded text of the signed part', async () => {
  const { priv, armoredPublic, keyId } = await ops;
  const r = await verifyPgp(pgpMime(INNER, await detach(INNER, priv)), armoredPublic);
  assert.equal(r, { ok: true, signedText: SIGNED_TEXT, keyId });
});

test('PGP/MIME: a text-mode (0x01) signature passes too', async () => {
  const { priv, armoredPublic } = await ops;
  const r = await verifyPgp(pgpMime(INNER, await detach(INNER, priv, 'text')), armoredPublic);
  assert.ok(r.ok);
});

test('PGP/MIME: still verifies after an MTA turned CRLF into LF', async () => {
  const { priv, armoredPublic } = await ops;
  const raw = pgpMime(INNER, await detach(INNER, priv)).toString('latin1').replace(/\r\n/g, '\n');
  const r = await verifyPgp(Buffer.from(raw, 'latin1'), armoredPublic);
  assert.ok(r.ok);
});

test('PGP/MIME: a nested multipart signed part gives its first text/plain only', async () => {
  const { priv, armoredPublic } = await ops;
  const inner = crlf(
    'Content-Type: multipart/mixed; boundary="in"\n\n--in\nContent-Type: text/plain\n\ndb tables\n' +
      '--in\nContent-Type: text/plain\n\ndb query name=second\n--in--\n',
  );
  const r = await verifyPgp(pgpMime(inner, await detach(inner, priv)), armoredPublic);
  assert.ok(r.ok);
  if (r.ok) assert.is(r.signedText, 'db tables');
});

test('PGP/MIME: one altered byte in the signed part fails', async () => {
  const { priv, armoredPublic } = await ops;
  const raw = pgpMime(INNER, await detach(INNER, priv));
  const i = raw.indexOf('db tables');
  raw[i + 3] = 'T'.charCodeAt(0);
  assert.equal(await verifyPgp(raw, armoredPublic), { ok: false, reason: 'bad signature' });
});

test('PGP/MIME: an altered header of the signed part fails (headers are signed)', async () => {
  const { priv, armoredPublic } = await ops;
  const raw = pgpMime(INNER, await detach(INNER, priv)).toString('latin1').replace('charset=utf-8', 'charset=utf-7');
  assert.equal(await verifyPgp(Buffer.from(raw, 'latin1'), armoredPublic), { ok: false, reason: 'bad signature' });
});

test('PGP/MIME: a signature by another key fails', async () => {
  const { armoredPublic } = await ops;
  const { priv: evePriv } = await eve;
  assert.equal(await verifyPgp(pgpMime(INNER, await detach(INNER, evePriv)), armoredPublic), { ok: false, reason: 'bad signature' });
});

test('PGP/MIME: an unsigned part after the signature is not in the signed text', async () => {
  const { priv, armoredPublic } = await ops;
  const extra = '------sig-b1\nContent-Type: text/plain\n\ndb query name=drop_everything\n';
  const r = await verifyPgp(pgpMime(INNER, await detach(INNER, priv), { extraPart: extra }), armoredPublic);
  assert.ok(r.ok);
  if (r.ok) {
    assert.is(r.signedText, SIGNED_TEXT);
    assert.not.match(r.signedText, 'drop_everything');
  }
});

test('PGP/MIME: a signed part wrapped in an unsigned multipart/mixed is unsigned', async () => {
  const { priv, armoredPublic } = await ops;
  const signed = pgpMime(INNER, await detach(INNER, priv)).toString('latin1');
  const [head, body] = [signed.slice(0, signed.indexOf('\r\n\r\n')), signed.slice(signed.indexOf('\r\n\r\n') + 4)];
  const ct = head.slice(head.indexOf('Content-Type:'));
  const wrapped = crlf(
    'From: ops@example.com\nTo: agent@example.com\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="outer"\n\n' +
      '--outer\nContent-Type: text/plain\n\ndb query name=drop_everything\n--outer\n',
  ) + `${ct}\r\n\r\n${body}\r\n--outer--\r\n`;
  assert.equal(await verifyPgp(Buffer.from(wrapped, 'latin1'), armoredPublic), { ok: false, reason: 'unsigned' });
});

test('PGP/MIME: another protocol (S/MIME) is unsigned; a missing signature part is bad', async () => {
  const { priv, armoredPublic } = await ops;
  const sig = await detach(INNER, priv);
  assert.equal(await verifyPgp(pgpMime(INNER, sig, { protocol: 'application/pkcs7-signature' }), armoredPublic), { ok: false, reason: 'unsigned' });
  const noSig = Buffer.from(
    crlf('From: ops@example.com\nContent-Type: multipart/signed; protocol="application/pgp-signature"; boundary=b\n\n--b\n') + INNER + crlf('\n--b--\n'),
    'latin1',
  );
  assert.equal(await verifyPgp(noSig, armoredPublic), { ok: false, reason: 'bad signature' });
});

async function clearsign(text: string, key: openpgp.PrivateKey): Promise<string> {
  return openpgp.sign({ message: await openpgp.createCleartextMessage({ text }), signingKeys: key });
}

function plainMail(body: string, headers = 'Content-Type: text/plain; charset=utf-8\n'): Buffer {
  return Buffer.from(crlf(`From: Ops <ops@example.com>\nTo: agent@example.com\nSubject: inline\n${headers}\n${body}`), 'utf8');
}

test('inline: a clearsigned block passes; only the signed text (dash-escaping undone) is returned', async () => {
  const { priv, armoredPublic, keyId } = await ops;
  const text = 'db tables\n- this line starts with a dash\n----- not an armor line\ndb describe hosts';
  const armored = await clearsign(text, priv);
  assert.match(armored, '- - this line starts with a dash');
  const body = `db query name=before_block\n\n${armored}\ndb query name=after_block\n`;
  const r = await verifyPgp(plainMail(body), armoredPublic);
  assert.equal(r, { ok: true, signedText: text, keyId });
});

test('inline: works inside a quoted-printable text/plain part', async () => {
  const { priv, armoredPublic } = await ops;
  const armored = await clearsign('db tables\nstatus', priv);
  const qp = armored.replace(/=/g, '=3D');
  const r = await verifyPgp(plainMail(qp, 'Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n'), armoredPublic);
  assert.ok(r.ok);
  if (r.ok) assert.is(r.signedText, 'db tables\nstatus');
});

test('inline: altered text or another key fails', async () => {
  const { priv, armoredPublic } = await ops;
  const { priv: evePriv } = await eve;
  const altered = (await clearsign('db query name=host hostname=a', priv)).replace('hostname=a', 'hostname=b');
  assert.equal(await verifyPgp(plainMail(altered), armoredPublic), { ok: false, reason: 'bad signature' });
  assert.equal(await verifyPgp(plainMail(await clearsign('db tables', evePriv)), armoredPublic), { ok: false, reason: 'bad signature' });
  const truncated = (await clearsign('db tables', priv)).replace(/-----BEGIN PGP SIGNATURE-----[^]*$/, '');
  assert.equal(await verifyPgp(plainMail(truncated), armoredPublic), { ok: false, reason: 'bad signature' });
});

test('a plain message is unsigned', async () => {
  const { armoredPublic } = await ops;
  assert.equal(await verifyPgp(plainMail('db tables\n'), armoredPublic), { ok: false, reason: 'unsigned' });
});

test('an expired key does not verify, even for a signature made while it was valid', async () => {
  const hourAgo = new Date(Date.now() - 3600_000);
  const old = await makeKey('ops@example.com', { date: hourAgo, keyExpirationTime: 600 });
  const sig = await detach(INNER, old.priv, 'binary', new Date(hourAgo.getTime() + 60_000));
  assert.equal(await verifyPgp(pgpMime(INNER, sig), old.armoredPublic), { ok: false, reason: 'bad signature' });
});

test('a revoked key does not verify', async () => {
  const k = await makeKey('ops@example.com');
  const sig = await detach(INNER, k.priv);
  assert.ok((await verifyPgp(pgpMime(INNER, sig), k.armoredPublic)).ok);
  const { publicKey: revoked } = await openpgp.revokeKey({ key: k.priv, format: 'armored' });
  assert.equal(await verifyPgp(pgpMime(INNER, sig), revoked), { ok: false, reason: 'bad signature' });
});

test('a private or unreadable key is unusable', async () => {
  const { priv, armoredPrivate } = await ops;
  const raw = pgpMime(INNER, await detach(INNER, priv));
  assert.equal(await verifyPgp(raw, armoredPrivate), { ok: false, reason: 'unusable key' });
  assert.equal(await verifyPgp(raw, 'not a key'), { ok: false, reason: 'unusable key' });
});

// An independent implementation: GnuPG signs (as Thunderbird/Enigmail/mutt would), we verify.
const GPG = ['/usr/bin/gpg', '/usr/local/bin/gpg'].find((p) => existsSync(p));
test('GnuPG-made signatures (PGP/MIME text mode and clearsigned) verify', async () => {
  if (!GPG) return console.log('  (gpg not installed: skipped)');
  const { dir, cleanup } = tempDir('mailagent-gpg-');
  try {
    const gpg = (args: string[], input?: string) => {
      const r = spawnSync(GPG, ['--homedir', dir, '--batch', '--yes', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { input, encoding: 'latin1' });
      if (r.status !== 0) throw new Error(`gpg ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    gpg(['--quick-gen-key', 'Ops <ops@example.com>', 'ed25519', 'sign', '1d']);
    const pub = gpg(['--armor', '--export', 'ops@example.com']);
    writeFileSync(join(dir, 'inner'), INNER, 'latin1');
    const sig = gpg(['--armor', '--textmode', '--detach-sign', '--output', '-', join(dir, 'inner')]);
    const r = await verifyPgp(pgpMime(INNER, sig.trim()), pub);
    assert.ok(r.ok, JSON.stringify(r));
    if (r.ok) assert.is(r.signedText, SIGNED_TEXT);
    const clear = gpg(['--clearsign', '--output', '-'], 'db tables\n- dash\nstatus\n');
    const c = await verifyPgp(plainMail(`unsigned line\n${clear}trailing line\n`), pub);
    assert.ok(c.ok, JSON.stringify(c));
    if (c.ok) assert.is(c.signedText, 'db tables\n- dash\nstatus');
  } finally {
    spawnSync('gpgconf', ['--homedir', dir, '--kill', 'gpg-agent']);
    cleanup();
  }
});

test.run();
