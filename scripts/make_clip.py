#!/usr/bin/env python3
"""Write a 16 kHz mono 16-bit WAV of exactly N seconds by joining (and repeating) source clips.

    python3 scripts/make_clip.py --seconds 10 --out clip10s.wav a.wav b.wav

The load scenarios POST this clip to the audio endpoints: real speech from the committed
fixtures, of a known length, with no tool beyond the standard library.
"""
import argparse
import wave


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("sources", nargs="+", help="16 kHz mono 16-bit WAV files")
    args = parser.parse_args()

    frames = []
    for path in args.sources:
        with wave.open(path, "rb") as src:
            if (src.getframerate(), src.getnchannels(), src.getsampwidth()) != (16000, 1, 2):
                raise SystemExit(f"{path}: not 16 kHz mono 16-bit")
            frames.append(src.readframes(src.getnframes()))
    wanted = int(args.seconds * 16000) * 2
    data = b""
    while len(data) < wanted:
        for chunk in frames:
            data += chunk
    with wave.open(args.out, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(data[:wanted])


if __name__ == "__main__":
    main()
