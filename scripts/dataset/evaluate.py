#!/usr/bin/env python3
"""Accuracy harness for the evloop audio endpoints, against the dev set's labels and against
the Python reference estimator.

    python3 scripts/dataset/evaluate.py DATASET_DIR                       # reference only
    python3 scripts/dataset/evaluate.py DATASET_DIR --url http://127.0.0.1:PORT
    python3 scripts/dataset/evaluate.py tests/fixtures/audio --url URL --reference PATH/reference_estimates.py

DATASET_DIR is a directory written by make_dataset.py (every file plus labels.json).  With
--url, each file is POSTed (body = the file's bytes, Content-Type audio/wav) to URL/analyze;
--hop / --threshold add ?vad_hop_size=&vad_threshold= to the request (otherwise the server's
defaults, 256 and 0.5, apply).  The reference's analyse() runs on the same bytes with the same
hop and threshold; it is imported from --reference (a .py file or its directory; default
../shared/reference/reference_estimates.py beside the repository, or $EVLOOP_REFERENCE).  --no-reference skips it.

Labels (made by make_dataset.py; the full text is in labels.json "definitions"):
  snr_db        true global SNR 10*log10(sum s^2 / sum n^2) of the mix, exact by construction.
  speech_ratio  fraction of the hop-256 analysis frames (16 kHz, 512-sample periodic Hann
                window, T = floor((N-512)/256)+1 frames) whose clean-speech energy is within
                40 dB of the loudest clean frame.
  speakers      number of distinct espeak-ng voice settings in the clip.

Measures (printed once per estimator: "server" = the /analyze response, "reference" =
reference_estimates.analyse):
  SNR MAE       mean |snr_db - label| over the snr_grid set (3 voices x white/pink/brown x
                0/5/10/20/30 dB), overall, by noise colour and by target SNR; bias = mean signed
                error; max = the largest single-clip error.  WADA-SNR (wada_snr_db) is shown on
                the same clips for comparison.  Speaker clips with noise get their own row.
  speech_ratio  mean |speech_ratio - label| over every clip with a speech label (snr_grid,
                clean, speakers), overall, by set and by grid SNR.
  speakers      per true k = 1..4 (speakers set): exact % and within +-1 %; plus how many
                single-voice clips (snr_grid + clean) are counted as exactly 1.
  special       noise-only and digital-silence clips: what is returned (labels: ratio 0, 0
                speakers, snr_db null for silence).
  format        every fmt_* file: status, and the difference from the 16-bit source clip's
                result (the same audio in another container/encoding/rate).
  corrupt       every bad_* file: status (the server must answer 4xx; the expected code is
                shown), and whether the reference decoder rejects it too.
  server vs reference (with --url and the reference): per clip snr_db, speech_ratio and
                speakers from both, their difference, and max / mean absolute difference.

Exit status: 0 when every request got an answer below 500; 1 if any answer was a 5xx;
2 if the server is unreachable (connection refused, reset or timed out).
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_REFERENCE = os.environ.get(
    "EVLOOP_REFERENCE",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "reference",
                 "reference_estimates.py"),
)
SPEECH_SETS = ("snr_grid", "clean", "speakers", "speakers_short")
SPEAKER_SETS = ("speakers", "speakers_short")


class Unreachable(Exception):
    pass


# ----------------------------------------------------------------------------- running
def load_reference(path):
    if os.path.isdir(path):
        path = os.path.join(path, "reference_estimates.py")
    spec = importlib.util.spec_from_file_location("reference_estimates", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def post(url, blob, timeout):
    """POST blob; returns (status, parsed JSON or None, raw text, seconds)."""
    req = urllib.request.Request(url, data=blob, method="POST",
                                 headers={"Content-Type": "audio/wav", "Connection": "close"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
        raise Unreachable("%s: %s" % (url, getattr(e, "reason", e)))
    dt = time.perf_counter() - t0
    text = body.decode("utf-8", "replace")
    try:
        js = json.loads(text)
    except ValueError:
        js = None
    return status, js, text, dt


def server_record(status, js, text, dt):
    rec = {"status": status, "seconds": dt}
    if status == 200 and isinstance(js, dict):
        snr = js.get("snr", js)
        spk = js.get("speaker_count", js)
        for k in ("snr_db", "snr_active_db", "speech_ratio", "wada_snr_db", "duration_s",
                  "sample_rate", "channels", "bits", "method"):
            rec[k] = snr.get(k) if isinstance(snr, dict) else None
        rec["speakers"] = spk.get("speakers") if isinstance(spk, dict) else None
    else:
        rec["error"] = (js.get("error") if isinstance(js, dict) else text.strip())[:70] if text else ""
        rec["json_status"] = js.get("status") if isinstance(js, dict) else None
    return rec


def reference_record(ref, blob, hop, threshold):
    try:
        r = ref.analyse(blob, hop=hop, threshold=threshold)
    except ref.WavError as e:
        return {"status": "reject", "error": str(e)[:70]}
    except Exception as e:                       # a crash in the reference is reported, not fatal
        return {"status": "crash", "error": ("%s: %s" % (type(e).__name__, e))[:70]}
    return {"status": 200, "snr_db": r["snr_db"], "snr_active_db": r["snr_active_db"],
            "speech_ratio": r["speech_ratio"], "wada_snr_db": r["wada_snr_db"], "speakers": r["speakers"],
            "sample_rate": r["sample_rate"], "channels": r["channels"], "bits": r["bits"]}


# ----------------------------------------------------------------------------- printing
def fmt(v, nd=2):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else "%.*f" % (nd, v)
    return str(v)


def table(headers, rows, title=None):
    """Print rows under headers, each column right-aligned if numeric; nothing if no rows."""
    if not rows:
        return
    if title:
        print("\n" + title)
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def numeric(s):
        try:
            float(s.split(" ")[0])
            return True
        except ValueError:
            return s in ("null", "-", "", "nan", "reject", "skipped", "crash")
    right = [i > 0 and all(numeric(r[i]) for r in cells[1:]) for i in range(len(headers))]
    line = lambda r: "  ".join(c.rjust(w[i]) if right[i] else c.ljust(w[i]) for i, c in enumerate(r)).rstrip()
    print("  " + line(cells[0]))
    print("  " + "  ".join("-" * x for x in w))
    for r in cells[1:]:
        print("  " + line(r))


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None and math.isfinite(v)


def err_stats(pairs):
    """pairs: [(name, estimate, label)] -> (n, MAE, bias, max abs err, worst name, n missing)."""
    ok = [(n, e - l) for n, e, l in pairs if num(e)]
    miss = len(pairs) - len(ok)
    if not ok:
        return len(pairs), None, None, None, "", miss
    a = [abs(d) for _, d in ok]
    worst = max(ok, key=lambda t: abs(t[1]))
    return len(pairs), sum(a) / len(a), sum(d for _, d in ok) / len(ok), max(a), worst[0], miss


def stat_row(label, pairs, nd):
    n, mae, bias, mx, worst, miss = err_stats(pairs)
    return [label, n, fmt(mae, nd), fmt(bias, nd), fmt(mx, nd), worst, miss]


# ----------------------------------------------------------------------------- accuracy tables
def accuracy(who, res, labels):
    """Print every accuracy table for one estimator ('server' or 'reference')."""
    print("\n" + "=" * 100)
    print("ACCURACY: %s" % who)
    print("=" * 100)
    L = labels
    get = lambda name, key: res[name][who].get(key) if res[name].get(who) else None
    grid = sorted(n for n in res if L[n]["set"] == "snr_grid")
    hdr = ["clips", "n", "MAE", "bias", "max", "worst clip", "no value"]

    for key, title in (("snr_db", "global SNR snr_db vs label (dB), snr_grid 0-30 dB"),
                       ("wada_snr_db", "WADA-SNR wada_snr_db vs label (dB), same clips (comparison)")):
        rows = []
        if grid:  # a split without the grid (pool) skips these rows
            rows.append(stat_row("all", [(n, get(n, key), L[n]["snr_db"]) for n in grid], 2))
            for c in ("white", "pink", "brown"):
                rows.append(stat_row(c, [(n, get(n, key), L[n]["snr_db"]) for n in grid if L[n]["noise"] == c], 2))
            for d in sorted({L[n]["snr_db"] for n in grid}):
                rows.append(stat_row("%g dB" % d, [(n, get(n, key), L[n]["snr_db"]) for n in grid
                                                   if L[n]["snr_db"] == d], 2))
        if key == "snr_db":
            noisy_spk = sorted(n for n in res if L[n]["set"] == "speakers" and L[n]["snr_db"] is not None)
            if noisy_spk:
                rows.append(stat_row("speaker clips 10-20 dB",
                                     [(n, get(n, key), L[n]["snr_db"]) for n in noisy_spk], 2))
        if rows:
            table(hdr, rows, title)

    sp = sorted(n for n in res if L[n]["set"] in SPEECH_SETS and L[n].get("speech_ratio") is not None)
    pairs = lambda names: [(n, get(n, "speech_ratio"), L[n]["speech_ratio"]) for n in names]
    rows = [stat_row("all speech clips", pairs(sp), 3),
            stat_row("all, vs the strict 40 dB label", [(n, get(n, "speech_ratio"), L[n]["speech_ratio_strict"])
                                                        for n in sp if L[n].get("speech_ratio_strict") is not None], 3),
            stat_row("all, vs the 20 ms-frame label", [(n, get(n, "speech_ratio"), L[n]["speech_ratio_20ms"])
                                                       for n in sp if L[n].get("speech_ratio_20ms") is not None], 3)]
    for s in SPEECH_SETS:
        if any(L[n]["set"] == s for n in sp):
            rows.append(stat_row(s, pairs([n for n in sp if L[n]["set"] == s]), 3))
    for d in sorted({L[n]["snr_db"] for n in grid}):
        rows.append(stat_row("snr_grid %g dB" % d, pairs([n for n in grid if L[n]["snr_db"] == d]), 3))
    table(hdr, rows, "speech_ratio vs label (talking time: the 40 dB rule, gaps under 0.2 s bridged)")

    for sets, title in ((("speakers",), "speaker count (speakers set: turns of >= 1 s)"),
                        (("speakers_short",), "speaker count (speakers_short set: short turns)"),
                        (SPEAKER_SETS, "speaker count (both speaker sets)")):
        spk = sorted(n for n in res if L[n]["set"] in sets)
        if not spk:
            continue
        rows = []
        groups = [("k=%s" % k, [n for n in spk if L[n]["speakers"] == k]) for k in sorted({L[n]["speakers"] for n in spk})]
        groups += [("clean", [n for n in spk if L[n]["snr_db"] is None]),
                   ("noisy 10-20 dB", [n for n in spk if L[n]["snr_db"] is not None]), ("all", spk)]
        for label, names in groups:
            est = [get(n, "speakers") for n in names]
            ex = sum(1 for n, e in zip(names, est) if e == L[n]["speakers"])
            w1 = sum(1 for n, e in zip(names, est) if num(e) and abs(e - L[n]["speakers"]) <= 1)
            got = ",".join(fmt(e) for e in est) if label.startswith("k=") else ""
            rows.append([label, len(names), "%d (%.0f %%)" % (ex, 100.0 * ex / max(len(names), 1)),
                         "%d (%.0f %%)" % (w1, 100.0 * w1 / max(len(names), 1)), got])
        table(["true k", "n", "exact", "within +-1", "estimates"], rows, title)
    single = sorted(n for n in res if L[n]["set"] in ("snr_grid", "clean"))
    ones = sum(1 for n in single if get(n, "speakers") == 1)
    others = sorted((n, get(n, "speakers")) for n in single if get(n, "speakers") != 1)
    if single:
        print("  single-voice clips (snr_grid + clean) counted as 1 speaker: %d / %d%s"
              % (ones, len(single), ("   (others: %s)" % ", ".join("%s=%s" % (n, fmt(v)) for n, v in others))
                                    if others else ""))

    special = sorted(n for n in res if L[n]["set"] in ("noise_only", "silence"))
    rows = [[n, fmt(get(n, "status")), fmt(get(n, "snr_db")), fmt(get(n, "speech_ratio"), 3),
             fmt(get(n, "speakers")), "ratio 0, 0 speakers" + (", snr null" if L[n]["set"] == "silence" else "")]
            for n in special]
    table(["clip", "status", "snr_db", "speech_ratio", "speakers", "label"], rows,
          "noise-only and silence clips")

    fmts = sorted(n for n in res if L[n]["set"] == "format")
    src = {n: L[n].get("source") for n in fmts}
    rows = []
    for n in fmts:
        s = src[n]
        d_snr = (get(n, "snr_db") - get(s, "snr_db")) if s and num(get(n, "snr_db")) and num(get(s, "snr_db")) else None
        d_r = (get(n, "speech_ratio") - get(s, "speech_ratio")) if s and num(get(n, "speech_ratio")) and num(get(s, "speech_ratio")) else None
        exp = L[n].get("expect_any_of") or [L[n]["expect_status"]]
        st = get(n, "status")
        rows.append([n, fmt(st), "/".join(map(str, exp)), "yes" if st in exp else "NO",
                     fmt(get(n, "snr_db")), fmt(d_snr), fmt(get(n, "speech_ratio"), 3), fmt(d_r, 3),
                     fmt(get(n, "speakers")), fmt(get(n, "sample_rate")), fmt(get(n, "channels")),
                     fmt(get(n, "bits")), (get(n, "error") or "")[:40]])
    table(["clip", "status", "expect", "ok", "snr_db", "d_snr vs src", "ratio", "d_ratio", "spk",
           "sr", "ch", "bits", "error"], rows,
          "format edge cases (d_* = this file minus its source clip %s; label snr_db %s)"
          % (", ".join(sorted({s for s in src.values() if s})) or "-",
             ", ".join(sorted({fmt(L[s]["snr_db"]) for s in src.values() if s})) or "-"))

    bad = sorted(n for n in res if L[n]["set"] == "corrupt")
    rows = []
    for n in bad:
        st = get(n, "status")
        exp = L[n].get("expect_any_of") or [L[n]["expect_status"]]
        if st == "skipped":
            verdict = "-"
        elif who == "reference":
            verdict = "yes" if st == "reject" else "NO"
        else:
            verdict = ("yes" if isinstance(st, int) and 400 <= st < 500 else "NO") + \
                      ("" if st in exp else " (not %s)" % "/".join(map(str, exp)))
        rows.append([n, L[n]["why"][:44], "/".join(map(str, exp)), fmt(st), verdict,
                     fmt(get(n, "json_status")) if who == "server" else "",
                     (get(n, "error") or "")[:60]])
    ok = sum(1 for r in rows if r[4].startswith("yes"))
    table(["file", "what", "expect", "status", "rejected (4xx)" if who == "server" else "rejected",
           "json status", "error"], rows,
          "corrupt / not-WAV inputs: %d / %d rejected" % (ok, sum(1 for r in rows if r[4] != "-")))

    ok200 = [n for n in res if L[n].get("expect_status") == 200 and L[n]["set"] != "format"]
    wrong = sorted((n, get(n, "status")) for n in ok200 if get(n, "status") != 200)
    if wrong:
        print("\n  clips that should have been analysed but were not: "
              + ", ".join("%s (%s: %s)" % (n, fmt(s), get(n, "error")) for n, s in wrong))


def compare(res, labels):
    """Server vs reference, per clip and summarised."""
    print("\n" + "=" * 100)
    print("SERVER vs REFERENCE (same bytes, same hop/threshold)")
    print("=" * 100)
    rows, d_snr, d_wada, d_r, d_k, k_eq, st_mismatch = [], [], [], [], [], 0, []
    for n in sorted(res):
        s, r = res[n].get("server"), res[n].get("reference")
        if not s or not r:
            continue
        s_ok, r_ok = s.get("status") == 200, r.get("status") == 200
        if s_ok != r_ok and r.get("status") != "skipped":
            st_mismatch.append((n, s.get("status"), r.get("status")))
        if not (s_ok and r_ok):
            continue
        diff = lambda k: (s[k] - r[k]) if num(s.get(k)) and num(r.get(k)) else None
        a, w, b, c = diff("snr_db"), diff("wada_snr_db"), diff("speech_ratio"), diff("speakers")
        if a is not None:
            d_snr.append((n, a))
        if w is not None:
            d_wada.append((n, w))
        if b is not None:
            d_r.append((n, b))
        if c is not None:
            d_k.append((n, c))
            k_eq += c == 0
        rows.append([n, fmt(s.get("snr_db")), fmt(r.get("snr_db")), fmt(a), fmt(s.get("speech_ratio"), 3),
                     fmt(r.get("speech_ratio"), 3), fmt(b, 3), fmt(s.get("speakers")), fmt(r.get("speakers")),
                     fmt(c)])
    table(["clip", "snr srv", "snr ref", "d", "ratio srv", "ratio ref", "d", "spk srv", "spk ref", "d"],
          rows, "per clip (d = server - reference)")

    def summ(name, ds, nd):
        if not ds:
            return [name, 0, "-", "-", "-", ""]
        a = [abs(d) for _, d in ds]
        worst = max(ds, key=lambda t: abs(t[1]))
        return [name, len(ds), fmt(max(a), nd), fmt(sum(a) / len(a), nd), fmt(sum(d for _, d in ds) / len(ds), nd),
                worst[0]]
    table(["quantity", "clips", "max |d|", "mean |d|", "mean d", "largest at"],
          [summ("snr_db (dB)", d_snr, 4), summ("wada_snr_db (dB)", d_wada, 4), summ("speech_ratio", d_r, 5),
           summ("speakers", d_k, 2)], "summary")
    print("  speakers equal on %d / %d clips" % (k_eq, len(d_k)))
    if st_mismatch:
        print("  accepted by one but not the other: "
              + ", ".join("%s (server %s, reference %s)" % t for t in st_mismatch))


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("dataset", help="directory with the clips and labels.json")
    ap.add_argument("--url", help="server base URL, e.g. http://127.0.0.1:8080 (omit: reference only)")
    ap.add_argument("--hop", type=int, help="vad_hop_size sent to the server and used by the reference "
                                            "(default: not sent; reference uses 256)")
    ap.add_argument("--threshold", type=float, help="vad_threshold (default: not sent; reference uses 0.5)")
    ap.add_argument("--reference", default=DEFAULT_REFERENCE,
                    help="reference_estimates.py or its directory (default %(default)s)")
    ap.add_argument("--no-reference", action="store_true", help="do not run the Python reference")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds")
    ap.add_argument("--json", help="also write every per-clip result to this JSON file")
    args = ap.parse_args()

    with open(os.path.join(args.dataset, "labels.json")) as f:
        labels = json.load(f)["clips"]
    hop = args.hop if args.hop is not None else 256
    thr = args.threshold if args.threshold is not None else 0.5
    ref = None
    if not args.no_reference:
        try:
            ref = load_reference(args.reference)
        except Exception as e:
            print("warning: cannot load the reference from %s (%s); continuing without it"
                  % (args.reference, e), file=sys.stderr)
    if ref is None and not args.url:
        ap.error("nothing to evaluate: give --url and/or drop --no-reference")

    url = None
    if args.url:
        q = {}
        if args.hop is not None:
            q["vad_hop_size"] = args.hop
        if args.threshold is not None:
            q["vad_threshold"] = args.threshold
        url = args.url.rstrip("/") + "/analyze" + ("?" + urllib.parse.urlencode(q) if q else "")

    if url:                                      # preflight: is anything listening?
        try:
            urllib.request.urlopen(args.url.rstrip("/") + "/", timeout=args.timeout).close()
        except urllib.error.HTTPError:
            pass                                 # any HTTP answer will do
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            print("server unreachable: %s (%s)" % (args.url, getattr(e, "reason", e)), file=sys.stderr)
            sys.exit(2)

    res, n5xx, lost, t_srv, audio_s = {}, [], [], 0.0, 0.0
    t0 = time.perf_counter()
    for name in sorted(labels):
        with open(os.path.join(args.dataset, name), "rb") as f:
            blob = f.read()
        res[name] = {}
        if url:
            try:
                status, js, text, dt = post(url, blob, args.timeout)
            except Unreachable as e:             # reset / refused / timed out on this request
                lost.append((name, str(e)))
                res[name]["server"] = {"status": "no answer", "error": str(e)[:70]}
            else:
                res[name]["server"] = server_record(status, js, text, dt)
        if url and res[name]["server"]["status"] != "no answer":
            t_srv += dt
            if status == 200:
                audio_s += labels[name].get("duration_s") or 0.0
            if status >= 500:
                n5xx.append((name, status, text.strip()[:100]))
        if ref is not None:
            if labels[name].get("expect_status") == 413:
                res[name]["reference"] = {"status": "skipped", "error": "no duration cap in the reference"}
            else:
                res[name]["reference"] = reference_record(ref, blob, hop, thr)

    print("dataset %s: %d files; hop %d, threshold %g%s" % (args.dataset, len(labels), hop, thr,
          "; server %s" % url if url else "; reference only"))
    if url:
        print("server: %d requests in %.2f s of wall time (%.2f s of analysed audio)" % (len(labels), t_srv, audio_s))
        accuracy("server", res, labels)
    if ref is not None:
        accuracy("reference", res, labels)
    if url and ref is not None:
        compare(res, labels)
    print("\n(total %.1f s)" % (time.perf_counter() - t0))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, sort_keys=True, default=str)
    if n5xx:
        print("\n5xx answers:", file=sys.stderr)
        for t in n5xx:
            print("  %s -> %s %s" % t, file=sys.stderr)
    if lost:
        print("\nno answer (connection refused, reset or timed out):", file=sys.stderr)
        for t in lost:
            print("  %s: %s" % t, file=sys.stderr)
        sys.exit(2)
    if n5xx:
        sys.exit(1)


if __name__ == "__main__":
    main()
