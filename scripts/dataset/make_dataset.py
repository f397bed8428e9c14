#!/usr/bin/env python3
"""Development data set for the evloop audio endpoints (/snr-detect, /speaker-count, /analyze).

    python3 scripts/dataset/make_dataset.py --out /tmp/evdev          # full dev set
    python3 scripts/dataset/make_dataset.py --fixtures                 # tests/fixtures/audio/
    python3 scripts/dataset/make_dataset.py --out DIR --long-seconds 0 # without the 413 clip
    python3 scripts/dataset/make_dataset.py --out /tmp/evhold --split holdout  # set aside
    python3 scripts/dataset/make_dataset.py --out /tmp/evpool --split pool     # 300 more
    python3 scripts/dataset/make_dataset.py --out /tmp/evunseen --split unseen # unseen variants
    python3 scripts/dataset/make_dataset.py --out /tmp/evcheck --split check   # checked once
    python3 scripts/dataset/make_dataset.py --out /tmp/evblind --split blind   # checked once, later
    python3 scripts/dataset/make_dataset.py --out /tmp/evsealed --split sealed # checked once, later still
    python3 scripts/dataset/make_dataset.py --out /tmp/evvault --split vault   # checked once, after sealed
    python3 scripts/dataset/make_dataset.py --out /tmp/evlearn --split learn   # to learn from

Needs python3 + numpy, espeak-ng and sox (Debian: apt-get install -y espeak-ng sox).
The output is deterministic: the same command writes byte-identical files (espeak-ng is
deterministic, sox runs with -R (fixed random seed) and -D (no dither), the noise comes from
numpy's seeded PCG64 generator, and labels.json is written with sorted keys).

What is generated (file-name prefix -> set):

  snr_*      SNR grid: 3 voices x {white, pink, brown} noise x {0, 5, 10, 20, 30} dB, 3-5 s.
  clean_*    2 clean clips (no added noise; one at a normal level, one quiet).
  spk_*      speaker clips, k = 1..4 speakers, 6 clips per k: turns of >= 1 s separated by
             pauses of 0.2-0.7 s, each speaker a distinct espeak-ng voice/variant/pitch/speed.
             Replicate r0 of each k is short (k turns, or 2 for k = 1) and clean.
  spkshort_* short turns (full set only): k = 1..4 speakers, one phrase of about 0.4-1 s per
             turn, pauses of 0.1-0.3 s, clean or 10-20 dB noise (4 clips per k).
  noise_*    noise only (no speech);  silence_*: digital silence.
  fmt_*      format edge cases made from one source clip (fmt_source_pcm16.wav) with sox:
             24-bit PCM, 24-bit WAVE_FORMAT_EXTENSIBLE, 32-bit float, 8 kHz, 44.1 kHz stereo,
             8-bit unsigned, 16-bit EXTENSIBLE (header written here), an extra LIST chunk
             before the data chunk, and a 0.3 s clip (under 20 analysis frames).
  bad_*      corrupt / not-WAV input: zero bytes, text, JSON, a 30-byte truncated header,
             truncated data, zero samples, IMA-ADPCM, A-law, fmt with 0 channels, and (full set
             only, --long-seconds) an over-long 8 kHz 8-bit clip.

Splits (--split): "tune" (the default, and the committed fixtures) is what the estimators'
constants are chosen on; "holdout" uses other voices, other sentences and other seeds, and is
only reported on, so that its figures are not fitted to the clips they are measured on. The
holdout split has no format or corrupt files (they test decoding, not speech). "pool" is a
second set-aside split, for the speaker count only, large enough that one clip more or less
right moves its figure by a third of a point: 300 turn-taking clips (75 per k = 1..4; each
with short turns at odds of 3 in 10), each voice drawn from a pool of 60 random
voice/variant/pitch/speed settings (none within 10 pitch steps of a setting of the same
variant in any split), saying sentences and phrases of its own, in the noise conditions of
the spk_* clips (file prefixes pool_ and poolshort_). "learn" is what the speaker count's
projection is learned from (scripts/dataset/learn_projection.py), never measured on: 2000 clips
made as the pool's, from 300 settings of its own (each at least 10 pitch steps from a setting
of the same variant in every other split, 3 from each other), saying the tune split's
sentences and phrases (file prefixes learn_ and learnshort_). "unseen" is set aside too: 300
clips made as the pool's, saying the pool's sentences and phrases, in voices of 42 espeak-ng
variants that no other split but check uses (file prefixes unseen_ and unseenshort_). "check"
is set aside too: 300 clips made as the pool's, saying sentences and phrases no
other split says, in 60 voices of the unseen split's variants (the projection has heard none of them; the
learn split leaves no room for new settings of the others), each at least 10 pitch steps from
every setting of the same variant in every other split (file prefixes check_ and
checkshort_). "blind" was made after check, for the next change of the speaker count, and
measured once after it: 300 clips made as the pool's, saying sentences and phrases no other
split says, in 60 voices of 30 espeak-ng variants of its own, whose pitch ranges and formants
are drawn at random in ranges close to those of espeak-ng's male and female variants (of the
variants no split used, most are whispering, robotic or effect voices or share their formants
with one another split draws from; see blind_variants()) (file prefixes blind_ and
blindshort_). "sealed" was made after blind, for the change after it, and measured once: made
as blind, from other seeds, saying sentences and phrases no other split says, in 60 voices of 30
variants of its own drawn as blind's (file prefixes sealed_ and sealedshort_). "vault" was made
after sealed, for the change after that, and measured once: made as sealed, from seeds, variants,
sentences and phrases of its own (file prefixes vault_ and vaultshort_).

Speech: espeak-ng renders each sentence (22.05 kHz); sox converts it to 16 kHz mono 32-bit
float with a 30 Hz high-pass (espeak output carries DC); numpy trims everything quieter than
-50 dB of the utterance peak from both ends.  Clips are built from these utterances plus
digital-silence pauses.  Speech is scaled to a peak of 0.5 before mixing.

Noise (unit RMS, seeded with the clip's explicit small seed):
  white  N(0,1) from numpy.random.default_rng(seed), mean removed;
  pink   the same white noise shaped in the FFT domain by 1/sqrt(f), brown by 1/f, with the
         shaping held flat below 20 Hz (f -> max(f, 20 Hz)) and the DC bin set to zero.

Mixing with an exact global SNR:  g = sqrt(sum s^2 / (sum n^2 * 10^(SNR/10))),  y = s + g*n;
if max|y| > 0.95 both s and g*n are scaled by 0.95/max|y| (the ratio is unchanged); then
y is quantised to 16-bit as round(32767*y).

Labels (labels.json, one entry per file; see LABEL_DEFINITIONS below for the exact text):
  snr_db        the target global SNR 10*log10(sum s^2 / sum (g n)^2), exact by construction
                (before the 16-bit rounding); null for clean clips, noise only and silence.
  speech_ratio  the fraction of the time someone is talking: speech_ratio_strict below, then
                every run of inactive frames shorter than 0.2 s between active ones counted as
                active (pauses between words, which a listener hears as talking; the 0.2 s
                hangover of ITU-T P.56).
  speech_ratio_strict  on the server's analysis grid for hop H = 256 at 16 kHz: frames
                t = 0..T-1, T = floor((N - 512)/256) + 1, frame t = clean speech samples
                [256t, 256t + 512) times a periodic Hann window of 512; energy
                E_t = sum (w * s)^2.  A frame is speech-active when E_t >= max_t E_t * 1e-4
                (within 40 dB of the loudest clean frame).  speech_ratio_strict = active / T.
  speech_ratio_20ms  the same rule on non-overlapping 20 ms (320-sample) rectangular frames
                (the section-0 definition), for information.
  speakers      number of distinct voices; turns = [start_s, end_s, speaker index] of each
                utterance (trimmed speech, not including the pauses).
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import wave

import numpy as np

SR = 16000
HOP = 256                 # default vad_hop_size of the server: label grid
WIN = 2 * HOP
SPEECH_PEAK = 0.5         # clean speech peak before mixing
CLIP_PEAK = 0.95          # mixtures are scaled down to this peak if they exceed it
ACTIVE_DB = 40.0          # speech-active: within 40 dB of the loudest clean frame
TRIM_DB = 50.0            # utterance trim threshold below its peak

# ----------------------------------------------------------------------------- sentences
SENTENCES = [
    "The kettle clicked off just as the phone began to ring.",
    "Please leave the parcel by the green door.",
    "Pass the salt, please.",
    "Nobody expected the bakery to sell out before nine.",
    "Turn left at the bridge, then keep going.",
    "My sister keeps a notebook full of bird sketches and train times.",
    "Who left the lights on?",
    "Could you check whether the window upstairs is shut?",
    "Rain again, so the match is off.",
    "Not today, thanks.",
    "We counted forty two lanterns along the river path last night.",
    "Bring a warm coat and some gloves.",
    "The printer on the third floor only works if you talk to it nicely.",
    "Lock the back door.",
    "That song reminds me of a long drive through the hills.",
    "Fresh lemons are cheaper on Thursday.",
]
# Sentences of the set-aside ("holdout") split: never used to choose a constant.
SENTENCES += [
    "The ferry leaves at half past seven from the north pier.",
    "Keep the receipt in case the shoes do not fit.",
    "Is the library open on Sunday?",
    "Her grandfather built the wooden boat in his garage.",
    "Switch off the radio before you go to sleep.",
    "Four cups of flour, two eggs, and a pinch of salt.",
    "Where did you park the car?",
    "The museum moved the old maps to the second floor.",
    "Snow is forecast for the mountains tonight.",
    "Call me when you reach the station.",
    "The orchestra tuned up while the audience found their seats.",
    "Water the tomatoes every other day.",
    "Somebody painted the fence a very bright yellow.",
    "Take the stairs, the lift is broken.",
    "They sailed around the island in under three hours.",
    "Tea or coffee?",
]
TUNE_SENTENCES = list(range(16))
HOLDOUT_SENTENCES = list(range(16, 32))
# Short sentences (about 1-1.5 s) for the short speaker clips and the format source clip.
SHORT = [2, 6, 9, 13]
HOLDOUT_SHORT = [18, 22, 25, 29]
# Short phrases (about 0.4-1 s) for the short-turn speaker clips (set spkshort).
PHRASES = ["Yes, of course.", "Not really.", "I think so.", "Over there.", "Maybe later.",
           "Right, fine.", "Hang on.", "Good idea.", "No thanks.", "Me too.", "Why not?", "Got it."]
HOLDOUT_PHRASES = ["Sure thing.", "Not at all.", "Probably.", "Just here.", "In a minute.",
                   "Okay then.", "Wait a second.", "Sounds good.", "Never mind.", "Same here.",
                   "How come?", "All done."]
PHRASE_BASE = len(SENTENCES)
SENTENCES += PHRASES + HOLDOUT_PHRASES
TUNE_PHRASES = list(range(PHRASE_BASE, PHRASE_BASE + len(PHRASES)))
HOLDOUT_PHRASE_IDX = list(range(PHRASE_BASE + len(PHRASES), len(SENTENCES)))


def said(lines):
    """Append `lines` to SENTENCES; their indices there."""
    start = len(SENTENCES)
    SENTENCES.extend(lines)
    return list(range(start, len(SENTENCES)))


# Sentences and phrases of the "pool" split (speaker counts on many random voices).
POOL_SENTENCE_TEXT = [
    "The bus was late because of the roadworks on the hill.",
    "Can you hand me the blue folder on the desk?",
    "We planted three apple trees behind the old shed.",
    "The meeting has been moved to Friday afternoon.",
    "I left my umbrella on the train again.",
    "The children built a fort out of cardboard boxes.",
    "Dinner will be ready in about twenty minutes.",
    "He painted the kitchen a pale shade of green.",
    "Our neighbours are away for the whole of August.",
    "The cat sleeps on the warm side of the radiator.",
    "Please remember to bring your passport tomorrow.",
    "The river flooded the lower fields last spring.",
    "She answered every question without looking at her notes.",
    "A small boat drifted slowly past the harbour wall.",
    "The shop on the corner sells the best bread in town.",
    "Let me know if the parcel arrives before noon.",
    "They played cards by candlelight during the storm.",
    "The garden gate squeaks whenever the wind blows.",
    "My brother fixed the bicycle with a piece of wire.",
    "The clock in the hall is always five minutes fast.",
]
POOL_PHRASE_TEXT = ["Of course not.", "Fair enough.", "I doubt it.", "Down the hall.", "Not yet.",
                    "Quite right.", "Hold on.", "Nice one.", "Thanks anyway.", "So do I.",
                    "Why me?", "Understood."]
POOL_SENTENCES = said(POOL_SENTENCE_TEXT)
POOL_PHRASES = said(POOL_PHRASE_TEXT)
# Sentences and phrases of the "check" split, which no other split says.
CHECK_SENTENCE_TEXT = [
    "The postman whistled the same tune every single morning.",
    "Could you turn the heating down a little?",
    "A flock of geese flew low over the frozen lake.",
    "The recipe calls for butter, but oil will do.",
    "We missed the last train and had to walk home.",
    "The old lighthouse has been turned into a small hotel.",
    "Please write your name at the top of every page.",
    "The market stalls were packed away before the rain came.",
    "Grandma still sends a card on every birthday.",
    "The football rolled under the parked van.",
    "He forgot the tickets on the kitchen table.",
    "Thunder rattled the windows all night long.",
    "The new bridge opens to traffic next week.",
    "Someone has eaten the last slice of cake.",
    "The violin lessons start again in September.",
    "Wait for the green light before you cross.",
    "The hotel breakfast ends at ten sharp.",
    "A fox ran across the lawn at midnight.",
    "My phone battery died halfway through the call.",
    "The soup needs a little more pepper.",
]
CHECK_PHRASE_TEXT = ["Absolutely.", "Not quite.", "I hope so.", "Up the stairs.", "Any moment.",
                     "Very well.", "One sec.", "Great stuff.", "No worries.", "Me neither.",
                     "Since when?", "Noted."]
CHECK_SENTENCES = said(CHECK_SENTENCE_TEXT)
CHECK_PHRASES = said(CHECK_PHRASE_TEXT)
# Sentences and phrases of the "blind" split, which no other split says.
BLIND_SENTENCE_TEXT = [
    "The baker opens his shop before the sun comes up.",
    "Could you pass me the blue folder on the shelf?",
    "Our neighbours painted their front door bright yellow.",
    "The museum is closed on the first Monday of the month.",
    "She keeps a spare key under the flower pot.",
    "The river burst its banks after three days of rain.",
    "Remember to water the tomatoes while I am away.",
    "The children built a snowman with a carrot nose.",
    "His flight was delayed by nearly four hours.",
    "The library fines were doubled last spring.",
    "A squirrel buried acorns all along the fence.",
    "The orchestra tuned up while the hall filled.",
    "We painted the garden shed a dark shade of green.",
    "The lift is out of order, so take the stairs.",
    "My brother collects old maps of the coast.",
    "The tide goes out far enough to walk to the island.",
    "The dinner guests arrived an hour early.",
    "The kettle clicked off just as the phone rang.",
    "Her bicycle had a flat tyre again this morning.",
    "The farmer sold his apples at the Sunday market.",
]
BLIND_PHRASE_TEXT = ["Certainly.", "Hardly ever.", "I suppose so.", "Round the corner.", "Right away.",
                     "All good.", "Just a tick.", "Well done.", "No matter.", "Likewise.",
                     "Says who?", "Fair point."]
BLIND_SENTENCES = said(BLIND_SENTENCE_TEXT)
BLIND_PHRASES = said(BLIND_PHRASE_TEXT)
# Sentences and phrases of the "sealed" split, which no other split says.
SEALED_SENTENCE_TEXT = [
    "The postman whistled the same tune every morning.",
    "Please leave your muddy boots by the back door.",
    "The old clock in the hall gains a minute a day.",
    "We watched the fishing boats come into the harbour.",
    "The recipe calls for two cups of brown sugar.",
    "A gust of wind blew the umbrella inside out.",
    "The carpenter measured the window frame twice.",
    "Their puppy chewed through the garden hose.",
    "The evening train was packed with tired commuters.",
    "I found a ten pound note in my winter coat.",
    "The bridge will be closed for repairs next week.",
    "She learned to juggle during the long holidays.",
    "The soup needs a pinch more salt and pepper.",
    "Thunder rolled across the valley all afternoon.",
    "The candles flickered when the window opened.",
    "Grandfather tells the same joke at every dinner.",
    "The parcel was left with the neighbour across the road.",
    "A heron stood perfectly still at the edge of the pond.",
    "The choir practises in the church hall on Thursdays.",
    "Someone left the gate open and the goats escaped.",
]
SEALED_PHRASE_TEXT = ["Not a chance.", "Good grief.", "Off you go.", "Hold that thought.", "By all means.", "Too right.",
                      "Any moment now.", "Nearly there.", "Go ahead.", "Spot on.", "Who knows?", "Fancy that."]
SEALED_SENTENCES = said(SEALED_SENTENCE_TEXT)
SEALED_PHRASES = said(SEALED_PHRASE_TEXT)
# Sentences and phrases of the "vault" split, which no other split says.
VAULT_SENTENCE_TEXT = [
    "The lighthouse keeper painted the railings white.",
    "Our neighbours are building a shed at the bottom of the garden.",
    "The library fines were waived for the summer.",
    "He dropped the keys down a drain outside the bank.",
    "The conductor waited for the late audience to find their seats.",
    "A fox crossed the lane just ahead of our headlights.",
    "The bakery sells out of bread before nine o'clock.",
    "Mother keeps the spare buttons in an old biscuit tin.",
    "The plumber could not come until the following Tuesday.",
    "Snow had drifted against the door during the night.",
    "The museum opened a new room for the dinosaur bones.",
    "Two swans glided slowly under the stone bridge.",
    "The printer jammed halfway through the report.",
    "We shared a pot of tea in the station waiting room.",
    "The hikers reached the summit just before the fog rolled in.",
    "Her handwriting was too small to read without glasses.",
    "The ferry was cancelled because of the strong wind.",
    "A robin built its nest in the old watering can.",
    "The students painted a mural on the playground wall.",
    "The radio played old songs late into the evening.",
]
VAULT_PHRASE_TEXT = ["Mind the step.", "Quite so.", "Back in a minute.", "Give it time.", "Over here.", "Steady on.",
                     "Hang about.", "Suits me.", "Cheers.", "More or less.", "How odd.", "Point taken."]
VAULT_SENTENCES = said(VAULT_SENTENCE_TEXT)
VAULT_PHRASES = said(VAULT_PHRASE_TEXT)
assert len(set(SENTENCES)) == len(SENTENCES), "a sentence is said by two splits"

# ----------------------------------------------------------------------------- voices
# name -> espeak-ng voice+variant, pitch (-p, 0-99), speed (-s, words per minute)
GRID_VOICES = {
    "v1": ("en-us+m3", 40, 160),
    "v2": ("en-gb+f2", 65, 150),
    "v3": ("en-gb-scotland+m7", 30, 172),
}
SPEAKER_POOL = [            # distinct voice/variant/pitch/speed settings
    ("en-us+m1", 30, 155),
    ("en+f3", 72, 165),
    ("en-gb-x-rp+m4", 50, 170),
    ("en-us+f4", 55, 148),
    ("en-gb-scotland+klatt", 42, 160),
    ("en-029+m6", 22, 145),
    ("en+f5", 85, 175),
    ("en-us-nyc+m2", 62, 158),
]
# The set-aside split's voices: other variants, pitches and speeds than the tuning split's.
HOLDOUT_GRID_VOICES = {
    "v4": ("en-us+m5", 48, 168),
    "v5": ("en+f1", 70, 152),
    "v6": ("en-gb-x-rp+m2", 35, 162),
}
HOLDOUT_SPEAKER_POOL = [
    ("en-us+m7", 26, 150),
    ("en-gb+f4", 78, 160),
    ("en+m3", 45, 175),
    ("en-us+f2", 60, 145),
    ("en-gb-scotland+m1", 38, 166),
    ("en-029+f1", 66, 156),
    ("en-gb-x-rp+f5", 90, 170),
    ("en-us-nyc+m4", 55, 152),
]
# The "pool" split draws its 60 voice settings from these at random (seeded; see pool_voices()).
POOL_LANGUAGES = ("en", "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
                  "en-gb-x-gbclan", "en-gb-x-gbcwmd")
POOL_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt",
                 "klatt2", "klatt3", "klatt4", "Alex", "adam", "linda", "john", "edward", "Andy", "Annie",
                 "max", "paul", "robert", "steph", "Michael")
POOL_VOICES = 60
POOL_PITCH_APART = 10     # two settings of one variant differ by at least this much pitch (0-99)
POOL_CLIPS = 300
# The "learn" split: the same kind of clips, many more voices (see drawn_voices()).
LEARN_VOICES = 300
LEARN_PITCH_APART = 3     # among the learn split's own settings; POOL_PITCH_APART from the others'
LEARN_CLIPS = 2000
# The "unseen" split's voices are drawn from variants that no other split but "check" draws from.
UNSEEN_VARIANTS = ("Alicia", "Andrea", "Denis", "Diogo", "Gene", "Henrique", "Hugo", "Jacky", "Lee", "Marco",
                   "Mario", "Mike", "Nguyen", "anika", "antonio", "aunty", "belinda", "benjamin", "boris",
                   "caleb", "david", "ed", "grandma", "grandpa", "gustave", "iven", "kaukovalta", "klatt5",
                   "klatt6", "marcelo", "michel", "miguel", "norbert", "pablo", "pedro", "quincy", "rob",
                   "sandro", "shelby", "travis", "victor", "zac")
# The "blind" split's voices are variants of its own. Of espeak-ng's variants no split draws from,
# most are whispering, robotic or effect voices or share their formants with one that is drawn
# (RicishayMax with max, edward2 with edward, Gene2 with Gene, iven2-4 with iven, steph3 with steph),
# so blind_variants() writes BLIND_VARIANT_COUNT new ones, their pitch range and formants drawn at
# random (seeded) in ranges close to those of espeak-ng's male and female variants, into a copy of
# espeak-ng's data.
BLIND_VARIANT_COUNT = 30
COLOURS = ("white", "pink", "brown")
GRID_SNRS = (0, 5, 10, 20, 30)
# speaker-clip replicates r0..r9: (noise colour or None, SNR dB)
SPK_CONDITIONS = [(None, None), ("white", 20), ("pink", 20), ("brown", 20), (None, None), ("pink", 15),
                  ("white", 10), ("brown", 15), ("pink", 10), ("brown", 10)]
# short-turn speaker clips (set spkshort): replicates r0..r3
SHORT_TURN_CONDITIONS = [(None, None), ("pink", 20), ("brown", 15), ("white", 10)]
# Gaps in speech shorter than this count as speech in the speech_ratio label (see below).
BRIDGE_S = 0.2


class Split:
    """Which voices, sentences and seeds a split uses: "tune" (the constants are chosen on it),
    "holdout" (set aside: only reported), "pool", "unseen", "check", "blind", "sealed" and "vault"
    (set aside, speaker clips only: only reported) or "learn" (speaker clips to learn the speaker projection from; never
    measured on)."""
    name = "tune"
    grid_voices = GRID_VOICES
    speaker_pool = SPEAKER_POOL
    sentences = TUNE_SENTENCES
    short = SHORT
    phrases = TUNE_PHRASES
    seed_base = 0

    @classmethod
    def use(cls, name):
        if name == "pool":
            cls.name, cls.sentences, cls.phrases, cls.seed_base = name, POOL_SENTENCES, POOL_PHRASES, 9000
        if name == "learn":
            cls.name, cls.seed_base = name, 40000
        if name == "unseen":
            cls.name, cls.sentences, cls.phrases, cls.seed_base = name, POOL_SENTENCES, POOL_PHRASES, 60000
        if name == "check":
            cls.name, cls.sentences, cls.phrases, cls.seed_base = name, CHECK_SENTENCES, CHECK_PHRASES, 70000
        if name == "blind":
            cls.name, cls.sentences, cls.phrases, cls.seed_base = name, BLIND_SENTENCES, BLIND_PHRASES, 80000
        if name == "sealed":
            cls.name, cls.sentences, cls.phrases, cls.seed_base = name, SEALED_SENTENCES, SEALED_PHRASES, 90000
        if name == "vault":
            cls.name, cls.sentences, cls.phrases, cls.seed_base = name, VAULT_SENTENCES, VAULT_PHRASES, 100000
        if name == "holdout":
            cls.name, cls.grid_voices, cls.speaker_pool = name, HOLDOUT_GRID_VOICES, HOLDOUT_SPEAKER_POOL
            cls.sentences, cls.short, cls.phrases, cls.seed_base = (HOLDOUT_SENTENCES, HOLDOUT_SHORT,
                                                                    HOLDOUT_PHRASE_IDX, 5000)

LABEL_DEFINITIONS = {
    "snr_db": "target global SNR in dB, 10*log10(sum s^2 / sum (g*n)^2) with s the clean speech "
              "and g*n the scaled noise as mixed (before 16-bit rounding); exact by construction. "
              "null when no noise was added (clean), for noise-only clips and for silence.",
    "speech_ratio": "fraction of the time someone is talking, on the server's hop-256 analysis frames "
                    "(16 kHz; T = floor((N-512)/256)+1 frames; frame t = clean speech samples "
                    "[256t, 256t+512) times a periodic Hann window of 512): a frame is active when its "
                    "clean-speech energy sum((w*s)^2) is within 40 dB of the loudest such frame "
                    "(>= max * 1e-4); then every run of inactive frames shorter than 0.2 s with active "
                    "frames on both sides counts as active (the pauses between words inside a phrase, "
                    "which a listener hears as talking; the 0.2 s hangover of ITU-T P.56).",
    "speech_ratio_strict": "the 40 dB rule alone, without bridging short gaps (the label of the first "
                           "version of this set).",
    "speech_ratio_20ms": "the same 40 dB rule on non-overlapping 20 ms (320-sample) rectangular frames.",
    "speakers": "number of distinct espeak-ng voice settings that speak in the clip.",
    "turns": "[start_s, end_s, speaker index] per utterance (trimmed speech, pauses excluded).",
    "expect_status": "HTTP status the server should return for this file (200 = analysable).",
    "expect_any_of": "acceptable statuses where more than one reading is reasonable.",
}


# ----------------------------------------------------------------------------- helpers
def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw).stdout


def espeak_voice(name):
    """The -v argument that speaks the voice `name` ("language+variant"). espeak-ng (1.51)
    drops a variant given after "en-gb" and speaks plain en-gb; "en" is the same British English
    voice (the same bytes without a variant) and takes it. So an en-gb voice is spelled "en"."""
    language, plus, variant = name.partition("+")
    return "en" + plus + variant if language == "en-gb" else name


class Renderer:
    """espeak-ng -> sox (16 kHz mono float, 30 Hz high-pass) -> trimmed float64 array.
    Results are cached per (voice, pitch, speed, sentence). Before a voice first speaks, it is
    checked to sound different from its language without the variant (espeak-ng falls back to
    the language's own voice, without a word, when it does not take a variant), and, when
    espeak_voice() spells its language another way, that the two sound the same."""

    def __init__(self, tmp, espeak_path=None):
        self.tmp = tmp
        self.cache = {}
        self.checked = set()
        self.samples = {}
        self.path = [] if espeak_path is None else ["--path=%s" % espeak_path]

    def sample(self, v):
        """The bytes espeak-ng writes for "Hello there." in voice `v` (the -v argument)."""
        if v not in self.samples:
            self.samples[v] = run(["espeak-ng"] + self.path + ["-v", v, "--stdout", "Hello there."])
        return self.samples[v]

    def check(self, name):
        if name in self.checked:
            return
        language, _, variant = name.partition("+")
        if variant and self.sample(espeak_voice(name)) == self.sample(language):
            sys.exit("make_dataset.py: espeak-ng speaks %s as plain %s: the variant is not taken" % (name, language))
        spoken = espeak_voice(language)
        if spoken != language and self.sample(spoken) != self.sample(language):
            sys.exit("make_dataset.py: espeak-ng's %s is no longer %s: %s cannot be spelled %s" % (
                spoken, language, name, espeak_voice(name)))
        self.checked.add(name)

    def __call__(self, voice, sentence_idx):
        key = (voice, sentence_idx)
        if key in self.cache:
            return self.cache[key]
        v, p, s = voice
        self.check(v)
        raw = os.path.join(self.tmp, "u.wav")
        run(["espeak-ng"] + self.path + ["-v", espeak_voice(v), "-p", str(p), "-s", str(s), "-w", raw,
             SENTENCES[sentence_idx]])
        pcm = run(["sox", "-R", "-D", raw, "-t", "raw", "-e", "floating-point", "-b", "32",
                   "-r", str(SR), "-c", "1", "-", "highpass", "30"])
        x = np.frombuffer(pcm, "<f4").astype(np.float64)
        a = np.abs(x)
        keep = np.nonzero(a >= a.max() * 10 ** (-TRIM_DB / 20))[0]
        x = x[keep[0]: keep[-1] + 1].copy()
        self.cache[key] = x
        return x


def make_noise(colour, n, seed):
    """Unit-RMS noise.  white: N(0,1), mean removed.  pink / brown: white shaped by 1/sqrt(f)
    / 1/f in the FFT domain, flat below 20 Hz, DC bin zero."""
    w = np.random.default_rng(seed).standard_normal(n)
    if colour == "white":
        x = w - w.mean()
    else:
        X = np.fft.rfft(w)
        f = np.maximum(np.fft.rfftfreq(n, 1.0 / SR), 20.0)
        X *= f ** (-0.5 if colour == "pink" else -1.0)
        X[0] = 0.0
        x = np.fft.irfft(X, n)
    return x / np.sqrt(np.mean(x ** 2))


def speech_ratio_labels(s):
    """(hop-256 ratio with short gaps bridged, hop-256 ratio strict, 20 ms rectangular-frame ratio
    strict) of the clean speech s."""
    thr = 10 ** (-ACTIVE_DB / 10)
    T = (len(s) - WIN) // HOP + 1
    if T <= 0 or not np.any(s):
        r_hop = r_bridged = 0.0
    else:
        w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)
        idx = np.arange(WIN)[None, :] + HOP * np.arange(T)[:, None]
        E = np.sum((s[idx] * w) ** 2, axis=1)
        active = E >= E.max() * thr
        r_hop = float(np.mean(active))
        r_bridged = float(np.mean(bridge(active, int(BRIDGE_S * SR / HOP))))
    n20 = len(s) // 320
    if n20 == 0 or not np.any(s):
        r_20 = 0.0
    else:
        E = np.sum(s[: n20 * 320].reshape(n20, 320) ** 2, axis=1)
        r_20 = float(np.mean(E >= E.max() * thr))
    return r_bridged, r_hop, r_20


def bridge(active, max_gap):
    """active with every run of at most max_gap False frames (12 at hop 256: 192 ms, the longest
    run shorter than 0.2 s), True on both sides, set True."""
    out = active.copy()
    t, T = 0, len(active)
    while t < T:
        if not active[t]:
            end = t
            while end < T and not active[end]:
                end += 1
            if t > 0 and end < T and end - t <= max_gap:
                out[t:end] = True
            t = end
        else:
            t += 1
    return out


def wav_bytes(q, sr=SR, channels=1):
    """Plain 44-byte-header 16-bit PCM WAV from an int16 array."""
    bio = io.BytesIO()
    with wave.open(bio, "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(2)
        wf.setframerate(sr)
        wf.writeframes(np.asarray(q, "<i2").tobytes())
    return bio.getvalue()


def quantise(y):
    return np.clip(np.round(32767.0 * y), -32768, 32767).astype(np.int16)


def silence(sec):
    return np.zeros(int(round(sec * SR)))


def r6(x):
    return None if x is None else float(round(x, 6))


def build_speech(render, parts, lead, tail):
    """parts: list of (voice tuple, sentence index, speaker index, pause after (s)).
    Returns (signal, turns)."""
    out, turns, t = [silence(lead)], [], lead
    for voice, si, spk, pause in parts:
        u = render(voice, si)
        turns.append([r6(t), r6(t + len(u) / SR), spk])
        out.append(u)
        t += len(u) / SR
        if pause:
            out.append(silence(pause))
            t += len(silence(pause)) / SR
    out.append(silence(tail))
    s = np.concatenate(out)
    return s * (SPEECH_PEAK / np.max(np.abs(s))), turns


def mix(s, colour, snr_db, seed):
    """Exact global-SNR mix -> (int16 samples, clean speech as mixed, gain applied)."""
    if colour is None:
        y, s_out = s.copy(), s.copy()
    else:
        n = make_noise(colour, len(s), seed)
        g = np.sqrt(np.sum(s ** 2) / (np.sum(n ** 2) * 10 ** (snr_db / 10)))
        y, s_out = s + g * n, s.copy()
    peak = np.max(np.abs(y))
    scale = 1.0
    if peak > CLIP_PEAK:
        scale = CLIP_PEAK / peak
        y, s_out = y * scale, s_out * scale
    return quantise(y), s_out, scale


def voice_dict(v):
    return {"voice": v[0], "pitch": v[1], "speed_wpm": v[2]}


# ----------------------------------------------------------------------------- clip sets
def speech_clip(name, set_name, s, turns, voices, colour, snr, seed, extra=None):
    q, s_mixed, scale = mix(s, colour, snr, seed)
    r_bridged, r_hop, r_20 = speech_ratio_labels(s_mixed)
    lab = {
        "set": set_name, "snr_db": None if colour is None else float(snr),
        "noise": colour or "none", "seed": seed if colour is not None else None,
        "speech_ratio": r6(r_bridged), "speech_ratio_strict": r6(r_hop), "speech_ratio_20ms": r6(r_20),
        "split": Split.name,
        "speakers": len(voices), "voices": [voice_dict(v) for v in voices], "turns": turns,
        "duration_s": r6(len(q) / SR), "frames": len(q), "sample_rate": SR, "channels": 1,
        "bits": 16, "peak_scale": r6(scale), "expect_status": 200,
    }
    if extra:
        lab.update(extra)
    return name, wav_bytes(q), lab


def pick_sentences(render, voice, start, min_s, max_s, pool=None):
    """Sentence indices (from `pool`, rotating from `start`) whose total speech is >= min_s,
    skipping any that would exceed max_s."""
    pool = Split.sentences if pool is None else pool
    chosen, total = [], 0.0
    for k in range(len(pool)):
        si = pool[(start + k) % len(pool)]
        d = len(render(voice, si)) / SR
        if total + d > max_s:
            continue
        chosen.append(si)
        total += d
        if total >= min_s:
            break
    return chosen


def grid_clips(render):
    out = []
    seed = Split.seed_base
    for vi, (vname, voice) in enumerate(sorted(Split.grid_voices.items())):
        for ci, colour in enumerate(COLOURS):
            for di, snr in enumerate(GRID_SNRS):
                seed += 1
                rng = np.random.default_rng([seed, 1])
                sents = pick_sentences(render, voice, vi * 5 + di, 2.2, 3.4)
                parts = [(voice, si, 0, float(round(rng.uniform(0.2, 0.7), 3)) if j < len(sents) - 1 else 0)
                         for j, si in enumerate(sents)]
                lead, tail = float(round(rng.uniform(0.3, 0.5), 3)), float(round(rng.uniform(0.3, 0.5), 3))
                s, turns = build_speech(render, parts, lead, tail)
                out.append(speech_clip("snr_%s_%s_%02ddb.wav" % (vname, colour, snr), "snr_grid", s, turns,
                                       [voice], colour, snr, seed,
                                       {"text": [SENTENCES[si] for si in sents]}))
    return out


def clean_clips(render):
    out = []
    voices = [v for _, v in sorted(Split.grid_voices.items())]
    for i, (voice, start, level) in enumerate([(voices[1], 2, 1.0), (voices[2], 9, 0.02)]):
        rng = np.random.default_rng([Split.seed_base + 200 + i, 1])
        sents = pick_sentences(render, voice, start, 2.4, 3.9)
        parts = [(voice, si, 0, float(round(rng.uniform(0.2, 0.7), 3)) if j < len(sents) - 1 else 0)
                 for j, si in enumerate(sents)]
        s, turns = build_speech(render, parts, 0.4, 0.4)
        s = s * level
        name = "clean_%d_%s.wav" % (i + 1, "normal" if level == 1.0 else "quiet")
        out.append(speech_clip(name, "clean", s, turns, [voice], None, None, None,
                               {"text": [SENTENCES[si] for si in sents],
                                "speech_peak_dbfs": r6(20 * np.log10(SPEECH_PEAK * level))}))
    return out


def name_of(k, r):
    colour, snr = SPK_CONDITIONS[r]
    return "spk_k%d_r%d_%s.wav" % (k, r, "clean" if colour is None else "%s%02ddb" % (colour, snr))


def speaker_clips(render):
    out = []
    for k in (1, 2, 3, 4):
        for r, (colour, snr) in enumerate(SPK_CONDITIONS):
            # r0-r5 keep the seeds they had before r6-r9 were added (the same clips).
            seed = Split.seed_base + (300 + 6 * (k - 1) + r + 1 if r < 6 else 600 + 4 * (k - 1) + r - 5)
            rng = np.random.default_rng([seed, 1])
            pool_v = Split.speaker_pool
            start = (3 * k + 5 * r) % len(pool_v)
            voices = [pool_v[(start + 3 * j) % len(pool_v)] for j in range(k)]
            short = r == 0
            nturns = (2 if k == 1 else k) if short else (3 if k == 1 else k + 2)
            pool = Split.short if short else Split.sentences
            parts, used = [], set()
            for t in range(nturns):
                spk = t % k
                j = (k + t) if short else (7 * k + 3 * r + 5 * t)
                for _ in range(2 * len(pool)):  # a turn must be >= 1 s and sentences not repeated
                    si = pool[j % len(pool)]
                    if si not in used and len(render(voices[spk], si)) >= SR:
                        break
                    j += 1
                else:
                    sys.exit("make_dataset.py: no unused sentence of 1 s or more left for %s" % name_of(k, r))
                used.add(si)
                pause = float(round(rng.uniform(0.2, 0.7), 3)) if t < nturns - 1 else 0
                parts.append((voices[spk], si, spk, pause))
            s, turns = build_speech(render, parts, float(round(rng.uniform(0.2, 0.5), 3)),
                                    float(round(rng.uniform(0.2, 0.5), 3)))
            name = name_of(k, r)
            out.append(speech_clip(name, "speakers", s, turns, voices, colour, snr, seed,
                                   {"text": [SENTENCES[p[1]] for p in parts], "short": short}))
    return out


def short_turn_clips(render):
    """k = 1..4 speakers taking short turns (one phrase of about 0.4-1 s each) with short pauses
    (0.1-0.3 s): the hard case for segmenting by pauses."""
    out = []
    pool_v = Split.speaker_pool
    for k in (1, 2, 3, 4):
        for r, (colour, snr) in enumerate(SHORT_TURN_CONDITIONS):
            seed = Split.seed_base + 700 + 4 * (k - 1) + r + 1
            rng = np.random.default_rng([seed, 1])
            start = (5 * k + 3 * r + 1) % len(pool_v)
            voices = [pool_v[(start + 3 * j) % len(pool_v)] for j in range(k)]
            nturns = max(4, 3 * k)
            parts = []
            for t in range(nturns):
                si = Split.phrases[(3 * k + 5 * r + 7 * t) % len(Split.phrases)]
                pause = float(round(rng.uniform(0.1, 0.3), 3)) if t < nturns - 1 else 0
                parts.append((voices[t % k], si, t % k, pause))
            s, turns = build_speech(render, parts, float(round(rng.uniform(0.2, 0.5), 3)),
                                    float(round(rng.uniform(0.2, 0.5), 3)))
            name = "spkshort_k%d_r%d_%s.wav" % (k, r, "clean" if colour is None else "%s%02ddb" % (colour, snr))
            out.append(speech_clip(name, "speakers_short", s, turns, voices, colour, snr, seed,
                                   {"text": [SENTENCES[p[1]] for p in parts], "short_turns": True}))
    return out


def pool_voices():
    """The pool split's 60 voice settings (see drawn_voices())."""
    return drawn_voices(9000, POOL_VOICES, [], POOL_PITCH_APART)


def learn_voices():
    """The learn split's 300 voice settings."""
    return drawn_voices(40000, LEARN_VOICES, pool_voices(), LEARN_PITCH_APART)


def unseen_voices():
    """The unseen split's 60 voice settings, of variants only it and the check split draw from."""
    return drawn_voices(60000, POOL_VOICES, [], POOL_PITCH_APART, UNSEEN_VARIANTS)


def blind_variants(prefix="blind", seed=80999):
    """The blind split's espeak-ng variant files (with another split's name and seed, that split's:
    split_variants()), name -> text: BLIND_VARIANT_COUNT voices, half
    male, half female, each with a pitch range (the men's lowest 70-95 Hz and highest 30-45 Hz
    above it, the women's 130-160 Hz and 50-80 Hz above it), flutter 0-8, roughness 0-5 and nine
    formant scalings in per cent of espeak-ng's defaults (frequency 90-110 for the men, 100-130
    for the women's first six and 100-115 for the rest; height 75-105; bandwidth 90-120 for the
    men, 120-160 for the women) drawn at random (seeded), in ranges close to those of
    espeak-ng's own m1-m8 and f1-f5."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(BLIND_VARIANT_COUNT):
        female = i % 2 == 1
        low = int(rng.integers(130, 161)) if female else int(rng.integers(70, 96))
        high = low + (int(rng.integers(50, 81)) if female else int(rng.integers(30, 46)))
        lines = ["language variant", "name %s%02d" % (prefix, i + 1), "gender %s" % ("female" if female else "male"),
                 "pitch %d %d" % (low, high), "flutter %d" % rng.integers(0, 9),
                 "roughness %d" % rng.integers(0, 6)]
        for f in range(9):
            if female:
                freq = int(rng.integers(100, 131)) if f <= 5 else int(rng.integers(100, 116))
                width = int(rng.integers(120, 161))
            else:
                freq, width = int(rng.integers(90, 111)), int(rng.integers(90, 121))
            lines.append("formant %d %d %d %d" % (f, freq, int(rng.integers(75, 106)), width))
        out["%s%02d" % (prefix, i + 1)] = "\n".join(lines) + "\n"
    return out


# The splits whose voices are of espeak-ng variants of their own, and the seed each draws them from.
VARIANT_SEEDS = {"blind": 80999, "sealed": 90999, "vault": 100999}


def split_variants(name):
    """The espeak-ng variant files of split `name` (one of VARIANT_SEEDS), named after it: drawn as
    the blind split's, from its own seed."""
    return blind_variants(name, VARIANT_SEEDS[name])


def espeak_data_with(variants, tmp):
    """A copy of espeak-ng's data directory under `tmp` with `variants` (name -> text) added;
    returns the --path to give espeak-ng."""
    version = run(["espeak-ng", "--version"]).decode()
    source = version.split("Data at:")[1].strip()
    root = os.path.join(tmp, "espeak")
    shutil.copytree(source, os.path.join(root, "espeak-ng-data"))
    for name, text in variants.items():
        with open(os.path.join(root, "espeak-ng-data", "voices", "!v", name), "w") as f:
            f.write(text)
    # Renderer.check() makes sure espeak-ng takes each of these when a voice first uses it.
    return root


def check_voices():
    """The check split's 60 voice settings: more of the unseen split's variants."""
    return drawn_voices(70000, POOL_VOICES, unseen_voices(), POOL_PITCH_APART, UNSEEN_VARIANTS)


def drawn_voices(seed, count, protected, apart, variants=POOL_VARIANTS):
    """`count` voice settings: language, variant (one of `variants`), pitch 15-94 and speed
    140-180 drawn at random (seeded). A draw is skipped when a setting of the tune or holdout split, or one of
    `protected`, has the same variant at a pitch less than POOL_PITCH_APART away, or one drawn
    before it here less than `apart`: the variant sets the timbre, the language only the
    accent."""
    rng = np.random.default_rng(seed)
    taken = protected + SPEAKER_POOL + HOLDOUT_SPEAKER_POOL + list(GRID_VOICES.values()) + list(HOLDOUT_GRID_VOICES.values())
    others = len(taken)
    variant = lambda v: v[0].split("+")[1]
    out = []
    while len(out) < count:
        v = ("%s+%s" % (POOL_LANGUAGES[rng.integers(len(POOL_LANGUAGES))], variants[rng.integers(len(variants))]),
             int(rng.integers(15, 95)), int(rng.integers(140, 181)))
        if all(variant(t) != variant(v) or abs(t[1] - v[1]) >= (POOL_PITCH_APART if i < others else apart)
               for i, t in enumerate(taken)):
            taken.append(v)
            out.append(v)
    return out


def pool_clips(render):
    """The pool split: 300 turn-taking clips, k = 1..4 in turn, voices drawn from pool_voices()
    (the learn split: 2000, and the unseen, check, blind, sealed and vault splits 300, with voices of their own). Each clip
    takes short turns at odds of 3 in 10
    (one phrase each, pauses of 0.1-0.3 s), or turns of a sentence (pauses of 0.2-0.7 s). Noise
    as in SPK_CONDITIONS, drawn per clip."""
    out = []
    if Split.name == "learn":
        pool_v = learn_voices()
        clips = LEARN_CLIPS
    elif Split.name == "unseen":
        pool_v = unseen_voices()
        clips = POOL_CLIPS
    elif Split.name == "check":
        pool_v = check_voices()
        clips = POOL_CLIPS
    elif Split.name in VARIANT_SEEDS:
        pool_v = drawn_voices(Split.seed_base, POOL_VOICES, [], POOL_PITCH_APART, tuple(split_variants(Split.name)))
        clips = POOL_CLIPS
    else:
        pool_v, clips = pool_voices(), POOL_CLIPS
    for i in range(clips):
        seed = Split.seed_base + 1 + i
        rng = np.random.default_rng([seed, 1])
        k = 1 + i % 4
        voices = [pool_v[j] for j in rng.choice(len(pool_v), k, replace=False)]
        short = rng.random() < 0.3
        colour, snr = SPK_CONDITIONS[int(rng.integers(len(SPK_CONDITIONS)))]
        nturns = max(4, 3 * k) if short else (3 if k == 1 else k + 2)
        parts = []
        for t in range(nturns):
            lines = Split.phrases if short else Split.sentences
            si = lines[int(rng.integers(len(lines)))]
            pause = float(round(rng.uniform(0.1, 0.3) if short else rng.uniform(0.2, 0.7), 3)) if t < nturns - 1 else 0
            parts.append((voices[t % k], si, t % k, pause))
        s, turns = build_speech(render, parts, float(round(rng.uniform(0.2, 0.5), 3)),
                                float(round(rng.uniform(0.2, 0.5), 3)))
        name = "%s%s_k%d_%03d_%s.wav" % (Split.name, "short" if short else "", k, i,
                                       "clean" if colour is None else "%s%02ddb" % (colour, snr))
        out.append(speech_clip(name, "speakers_short" if short else "speakers", s, turns, voices, colour, snr,
                               seed, {"text": [SENTENCES[p[1]] for p in parts], "short_turns": short}))
    return out


def special_clips():
    out = []
    for colour, seed in (("white", Split.seed_base + 401), ("brown", Split.seed_base + 402)):
        n = make_noise(colour, int(SR * 1.5), seed) * 0.05
        q = quantise(n)
        out.append(("noise_only_%s.wav" % colour, wav_bytes(q), {
            "set": "noise_only", "snr_db": None, "noise": colour, "seed": seed, "speech_ratio": 0.0,
            "speech_ratio_20ms": 0.0, "speakers": 0, "voices": [], "turns": [], "duration_s": 1.5,
            "frames": len(q), "sample_rate": SR, "channels": 1, "bits": 16, "noise_rms": 0.05,
            "expect_status": 200}))
    q = np.zeros(int(SR * 1.5), np.int16)
    out.append(("silence_1p5s.wav", wav_bytes(q), {
        "set": "silence", "snr_db": None, "noise": "none", "seed": None, "speech_ratio": 0.0,
        "speech_ratio_20ms": 0.0, "speakers": 0, "voices": [], "turns": [], "duration_s": 1.5,
        "frames": len(q), "sample_rate": SR, "channels": 1, "bits": 16, "expect_status": 200,
        "expect_json": "snr_db null, speech_ratio 0, speakers 0"}))
    return out


def extensible_16(pcm16_wav):
    """Re-wrap a plain 16-bit mono WAV as WAVE_FORMAT_EXTENSIBLE (fmt chunk of 40 bytes)."""
    data = pcm16_wav[44:]
    guid_pcm = bytes.fromhex("0100000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, SR, SR * 2, 2, 16, 22, 16, 0x4) + guid_pcm
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def with_list_chunk(pcm16_wav):
    """Insert a LIST/INFO chunk between the fmt and data chunks."""
    text = b"evloop audio test fixture\x00"          # even length: no pad byte needed
    info = b"INFO" + b"ICMT" + struct.pack("<I", len(text)) + text
    lst = b"LIST" + struct.pack("<I", len(info)) + info
    body = pcm16_wav[8:36] + lst + pcm16_wav[36:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def format_and_corrupt(render, tmp, long_seconds):
    """Format edge cases and corrupt files, all derived from one short source clip."""
    out = []
    voice = GRID_VOICES["v1"]
    src_name, src_wav, src_lab = speech_clip(
        "fmt_source_pcm16.wav", "format", *build_speech(render, [(voice, 13, 0, 0)], 0.25, 0.25),
        [voice], "pink", 20, 501, {"text": [SENTENCES[13]], "variant": "16-bit PCM source"})
    out.append((src_name, src_wav, src_lab))
    src = os.path.join(tmp, "src.wav")
    with open(src, "wb") as f:
        f.write(src_wav)

    def sox_to(args_out, args_fx=()):
        dst = os.path.join(tmp, "dst.wav")
        run(["sox", "-R", "-D", src] + list(args_out) + [dst] + list(args_fx))
        with open(dst, "rb") as f:
            return f.read()

    base = {k: src_lab[k] for k in ("snr_db", "noise", "seed", "speech_ratio", "speech_ratio_20ms",
                                    "speakers", "voices", "turns", "text")}
    same_samples = dict(base, set="format", source=src_name, expect_status=200)
    variants = [
        ("fmt_pcm24.wav", sox_to(["-t", "wavpcm", "-e", "signed", "-b", "24"]),
         {"variant": "24-bit PCM, format tag 1", "bits": 24, "sample_rate": SR, "channels": 1}),
        ("fmt_ext24.wav", sox_to(["-e", "signed", "-b", "24"]),
         {"variant": "24-bit PCM, WAVE_FORMAT_EXTENSIBLE (0xFFFE), fact chunk", "bits": 24,
          "sample_rate": SR, "channels": 1}),
        ("fmt_float32.wav", sox_to(["-e", "floating-point", "-b", "32"]),
         {"variant": "32-bit IEEE float (tag 3), fmt of 18 bytes, fact chunk", "bits": 32,
          "sample_rate": SR, "channels": 1}),
        ("fmt_u8.wav", sox_to(["-e", "unsigned", "-b", "8"]),
         {"variant": "8-bit unsigned PCM", "bits": 8, "sample_rate": SR, "channels": 1}),
        ("fmt_ext16.wav", extensible_16(src_wav),
         {"variant": "16-bit PCM, WAVE_FORMAT_EXTENSIBLE (0xFFFE)", "bits": 16, "sample_rate": SR,
          "channels": 1}),
        ("fmt_list_chunk.wav", with_list_chunk(src_wav),
         {"variant": "16-bit PCM with a LIST/INFO chunk before data", "bits": 16, "sample_rate": SR,
          "channels": 1}),
        ("fmt_8k.wav", sox_to(["-r", "8000"]),
         {"variant": "8 kHz 16-bit (resampled: noise above 4 kHz removed, snr label approximate)",
          "bits": 16, "sample_rate": 8000, "channels": 1, "label_approximate": True}),
        ("fmt_44k_stereo.wav", sox_to(["-r", "44100", "-c", "2"]),
         {"variant": "44.1 kHz 16-bit stereo (both channels equal)", "bits": 16, "sample_rate": 44100,
          "channels": 2, "label_approximate": True}),
    ]
    for name, blob, extra in variants:
        out.append((name, blob, dict(same_samples, **extra)))

    # a clip under 20 analysis frames (0.3 s): WADA fallback, or 422 "too short"
    short = render(voice, 13)[: int(0.3 * SR)]
    short = short * (SPEECH_PEAK / np.max(np.abs(short)))
    n = make_noise("pink", len(short), 502)
    g = np.sqrt(np.sum(short ** 2) / (np.sum(n ** 2) * 10 ** (20 / 10)))
    q = quantise(short + g * n)
    out.append(("fmt_short_0p3s.wav", wav_bytes(q), {
        "set": "format", "variant": "0.3 s (18 analysis frames at hop 256)", "snr_db": 20.0,
        "noise": "pink", "seed": 502, "speech_ratio": None, "speakers": None, "duration_s": r6(len(q) / SR),
        "frames": len(q), "sample_rate": SR, "channels": 1, "bits": 16,
        "expect_status": 200, "expect_any_of": [200, 422]}))

    # ---------------------------------------------------------------- corrupt / not WAV
    def bad(name, blob, expect, why, any_of=None):
        lab = {"set": "corrupt", "expect_status": expect, "why": why}
        if any_of:
            lab["expect_any_of"] = any_of
        out.append((name, blob, lab))

    zero_samples = bytearray(src_wav[:44])
    struct.pack_into("<I", zero_samples, 4, 36)
    struct.pack_into("<I", zero_samples, 40, 0)
    zero_ch = bytearray(src_wav[:44 + 8000])          # 0.25 s, sizes patched to match
    struct.pack_into("<I", zero_ch, 4, 36 + 8000)
    struct.pack_into("<I", zero_ch, 40, 8000)
    struct.pack_into("<H", zero_ch, 22, 0)
    bad("bad_empty.wav", b"", 415, "zero-byte body", [400, 415])
    bad("bad_text.wav", b"This is not a sound file, just a line of plain text.\n", 415, "plain text")
    bad("bad_json.wav", json.dumps({"audio": "clip.wav", "sample_rate": 16000}).encode() + b"\n", 415, "JSON")
    bad("bad_trunc_header.wav", src_wav[:30], 400, "first 30 bytes of a WAV (fmt chunk cut)", [400, 415])
    bad("bad_trunc_data.wav", src_wav[:3000], 400, "first 3000 bytes: data chunk shorter than declared")
    bad("bad_zero_samples.wav", bytes(zero_samples), 422, "valid header, data chunk of 0 bytes")
    bad("bad_zero_channels.wav", bytes(zero_ch), 400, "fmt chunk says 0 channels", [400, 415])
    bad("bad_ima_adpcm.wav", sox_to(["-e", "ima-adpcm"]), 415, "IMA-ADPCM (format tag 0x11)")
    bad("bad_alaw.wav", sox_to(["-e", "a-law"]), 415, "A-law (format tag 6)")
    if long_seconds > 0:
        n = int(long_seconds * 8000)
        bio = io.BytesIO()
        with wave.open(bio, "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(1)
            wf.setframerate(8000)
            wf.writeframes(b"\x80" * n)
        lab = {"set": "corrupt", "expect_status": 413, "why": "%g s of 8 kHz 8-bit silence: over the "
               "duration cap" % long_seconds, "duration_s": float(long_seconds), "full_set_only": True}
        out.append(("bad_too_long.wav", bio.getvalue(), lab))
    return out


# ----------------------------------------------------------------------------- main
FIXTURE_NAMES = [
    "snr_v1_white_00db.wav", "snr_v2_pink_05db.wav", "snr_v2_brown_10db.wav",
    "snr_v1_pink_20db.wav", "snr_v3_white_30db.wav", "snr_v1_brown_30db.wav",
    "clean_1_normal.wav",
    "spk_k1_r0_clean.wav", "spk_k2_r0_clean.wav", "spk_k3_r0_clean.wav", "spk_k4_r0_clean.wav",
    "noise_only_white.wav", "silence_1p5s.wav",
]


# The splits of speaker clips only (pool_clips()): no grid, clean, format or corrupt files.
SPEAKER_SPLITS = ("pool", "unseen", "check", "blind", "sealed", "vault", "learn")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="write the full dev set into this directory")
    g.add_argument("--fixtures", action="store_true",
                   help="write the small committed subset into tests/fixtures/audio/")
    ap.add_argument("--split", choices=("tune", "holdout") + SPEAKER_SPLITS, default="tune",
                    help="tune: the voices, sentences and seeds the constants are chosen on (default); "
                         "holdout: other voices, sentences and seeds, set aside to report on; "
                         "pool: 300 speaker clips of 60 more voices, set aside to report on; "
                         "unseen: 300 speaker clips of 60 voices of variants no other split but check uses, "
                         "set aside to report on; "
                         "check: 300 speaker clips of 60 more voices of the unseen split's variants, "
                         "in sentences no other split says, set aside to report on; "
                         "blind: 300 speaker clips of 60 voices of 30 espeak-ng variants of its own, in "
                         "sentences no other split says, set aside to report on; "
                         "sealed: made as blind, from other seeds, variants and sentences; "
                         "vault: made as sealed, from seeds, variants and sentences of its own; "
                         "learn: 2000 speaker clips of 300 more voices, to learn the speaker "
                         "projection from")
    ap.add_argument("--long-seconds", type=float, default=660.0,
                    help="duration of bad_too_long.wav in the full set (0 = skip; default 660)")
    args = ap.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_dir = os.path.join(root, "tests", "fixtures", "audio") if args.fixtures else args.out
    os.makedirs(out_dir, exist_ok=True)

    if args.fixtures and args.split != "tune":
        ap.error("--fixtures are made from the tune split")
    Split.use(args.split)
    with tempfile.TemporaryDirectory() as tmp:
        variants = split_variants(args.split) if args.split in VARIANT_SEEDS else None
        render = Renderer(tmp, espeak_data_with(variants, tmp) if variants else None)
        if args.split in SPEAKER_SPLITS:
            clips = pool_clips(render)
        else:
            clips = grid_clips(render) + clean_clips(render) + speaker_clips(render) + special_clips()
        if not args.fixtures and args.split not in SPEAKER_SPLITS:
            clips += short_turn_clips(render)
        if args.split == "tune":  # formats and corrupt files test decoding, not the voices
            clips += format_and_corrupt(render, tmp, 0 if args.fixtures else args.long_seconds)

    if args.fixtures:
        keep = set(FIXTURE_NAMES)
        clips = [c for c in clips if c[0] in keep or c[2]["set"] in ("format", "corrupt")]
    names = [c[0] for c in clips]
    assert len(names) == len(set(names)), "duplicate clip names"

    labels = {"description": "evloop audio dev set; generated by scripts/dataset/make_dataset.py "
                             "(%s)" % ("--fixtures" if args.fixtures else "--out DIR"),
              "definitions": LABEL_DEFINITIONS, "hop_size": HOP, "sample_rate": SR, "split": args.split,
              "clips": {}}
    total = 0
    for name, blob, lab in clips:
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(blob)
        lab = dict(lab, bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())
        labels["clips"][name] = lab
        total += len(blob)
    with open(os.path.join(out_dir, "labels.json"), "w") as f:
        json.dump(labels, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote %d files (%.1f kB of audio/inputs) + labels.json to %s" % (len(clips), total / 1024, out_dir))


if __name__ == "__main__":
    main()
