"""Text for the synthetic corpus: template sentences over a small vocabulary, and the mix of
those with natural sentences (`dualasr.corpus.sentences`).

Deterministic: the same seed gives the same sequence of sentences.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from dualasr.corpus.sentences import natural_sentences
from dualasr.tokenizer import normalize_text, number_words, ordinal_words


def _time(r: random.Random) -> str:
    h = r.randint(1, 12)
    m = r.choice([0, 0, 5, 10, 15, 20, 30, 30, 40, 45, 50, r.randint(1, 59)])
    if m == 0:
        s = r.choice([f"{number_words(h)} o'clock", number_words(h)])
    elif m == 30 and r.random() < 0.4:
        s = f"half past {number_words(h)}"
    elif m == 15 and r.random() < 0.4:
        s = f"quarter past {number_words(h)}"
    elif m == 45 and r.random() < 0.4:
        s = f"quarter to {number_words(h % 12 + 1)}"
    else:
        s = f"{number_words(h)} {'oh ' + number_words(m) if m < 10 else number_words(m)}"
    if r.random() < 0.4:
        s += " " + r.choice(["in the morning", "in the afternoon", "in the evening", "at night"])
    return s


def _duration(r: random.Random) -> str:
    n = r.choice([1, 2, 3, 5, 10, 15, 20, 25, 30, 45, r.randint(2, 59)])
    unit = r.choice(["minute", "minute", "second", "hour"])
    if n == 1:
        return f"{r.choice(['one', 'a'])} {unit}"
    s = f"{number_words(n)} {unit}s"
    if unit == "hour" and n > 12:
        s = f"{number_words(n % 12 or 2)} hours"
    if r.random() < 0.15:
        s += " and thirty seconds" if unit == "minute" else ""
    return s


def _digits(r: random.Random, lo: int = 3, hi: int = 7) -> str:
    return " ".join(number_words(r.randint(0, 9)) for _ in range(r.randint(lo, hi)))


def _date(r: random.Random) -> str:
    month, day = r.choice(_MONTHS), r.randint(1, 31 if r.random() < 0.9 else 28)
    return r.choice([f"{month} {ordinal_words(day)}", f"the {ordinal_words(day)} of {month}"])


def _money(r: random.Random) -> str:
    d = r.choice([r.randint(1, 99), r.randint(100, 999), r.randint(1000, 5000)])
    s = f"{number_words(d)} dollar{'s' if d != 1 else ''}"
    if r.random() < 0.5:
        s += f" and {number_words(r.randint(1, 99))} cents"
    return s


_MONTHS = (
    "january february march april may june july august september october november december"
).split()
_DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()

# Slot fillers: a list of strings, or a function of the RNG.
_SLOTS: dict[str, Sequence[str] | Callable[[random.Random], str]] = {
    "time": _time,
    "duration": _duration,
    "digits": _digits,
    "date": _date,
    "money": _money,
    "digit": lambda r: number_words(r.randint(0, 9)),
    "count": lambda r: number_words(r.choice([r.randint(2, 12), r.randint(13, 99)])),
    "temp": lambda r: number_words(r.randint(55, 85)),
    "percent": lambda r: number_words(r.choice(range(10, 101, 10))),
    "day": _DAYS + ["today", "tomorrow", "tonight", "next week", "this weekend"],
    "weekday": _DAYS,
    "contact": [
        "mom", "dad", "john", "mary", "david", "sarah", "the office", "the doctor", "my sister",
        "my brother", "the front desk", "customer service", "the school", "grandma", "alex",
    ],
    "phone_kind": ["mobile", "cell phone", "home phone", "work phone"],
    "message": [
        "i am running late", "see you soon", "call me back", "i will be home at six",
        "the meeting has moved", "thank you", "happy birthday", "i am on my way",
    ],
    "device": ["lights", "lamp", "fan", "heater", "radio", "television", "coffee maker", "oven"],
    "room": ["kitchen", "bedroom", "living room", "office", "garage", "bathroom", "hallway"],
    "onoff": ["on", "off"],
    "genre": ["jazz", "rock", "classical", "country", "relaxing", "dance", "piano"],
    "account_item": [
        "account number", "password", "pin number", "extension", "mailbox number", "phone number",
        "zip code", "date of birth", "member number", "conference number",
    ],
    "menu_action": [
        "check your balance", "pay your bill", "speak with an operator", "hear these options again",
        "leave a message", "change your password", "return to the main menu", "record your name",
        "listen to your messages", "report a problem", "hear your account balance",
        "transfer your call", "cancel your order", "mute or unmute yourself",
    ],
    "dept": ["sales", "billing", "technical support", "customer service", "the operator",
             "accounting", "the company directory", "new orders"],
    "company": ["city bank", "blue sky airlines", "the north street clinic", "green valley power",
                "super awesome company", "main street pharmacy"],
    "task": ["call the doctor", "buy milk", "pay the bill", "pick up the kids", "take my medicine",
             "send the report", "water the plants", "book a table", "check the mail"],
    "food": ["pizza", "coffee", "tea", "bread", "eggs", "rice", "soup", "apples", "cheese", "chicken"],
    "place": ["the station", "the airport", "the park", "work", "home", "the store", "the library",
              "the hospital", "the bank", "school"],
    "person": ["my friend", "the doctor", "our teacher", "your brother", "the driver", "my boss",
               "the neighbor", "the manager"],
    "weather": ["sunny", "cloudy", "cold", "warm", "windy", "rainy", "hot"],
    "adj": ["good", "great", "busy", "quiet", "late", "early", "ready", "tired", "happy"],
}

_TEMPLATES: tuple[str, ...] = (
    # timers, alarms, reminders
    "set a timer for {duration}",
    "start a timer for {duration}",
    "how much time is left on the timer",
    "cancel the timer",
    "wake me up at {time}",
    "set an alarm for {time}",
    "set an alarm for {day} at {time}",
    "turn off the alarm",
    "remind me to {task} at {time}",
    "remind me to {task} {day}",
    "what time is it",
    "it is {time}",
    "the time is {time}",
    "the meeting is on {date} at {time}",
    "my appointment is on {weekday} at {time}",
    "what is the date {day}",
    "today is {weekday} {date}",
    "the train leaves at {time}",
    # calls and messages
    "call {contact}",
    "call {contact} on the {phone_kind}",
    "please call {contact} {day}",
    "dial {digits}",
    "my phone number is {digits}",
    "the extension is {digits}",
    "send a message to {contact} saying {message}",
    "text {contact} {message}",
    "read my new messages",
    "you have {count} new messages",
    "you have one new message",
    # phone menus
    "please enter your {account_item} followed by the pound key",
    "please enter your {account_item} then press pound",
    "please say or enter your {account_item}",
    "press {digit} to {menu_action}",
    "to {menu_action} press {digit}",
    "for {dept} press {digit}",
    "for {dept} please press {digit}",
    "to repeat this menu press star",
    "thank you for calling {company}",
    "thank you for calling {company} your call is important to us",
    "please hold while we transfer your call",
    "please hold while i try to connect you",
    "all of our agents are busy please stay on the line",
    "the person you are calling is not available",
    "please leave your message after the tone",
    "when you are done hang up or press the pound key",
    "your call cannot be completed as dialed",
    "please check the number and dial again",
    "the number you have dialed is not in service",
    "that is not a valid option please try again",
    "invalid entry please try again",
    "your account balance is {money}",
    "your payment of {money} was received on {date}",
    "you entered {digits} if this is correct press one",
    "your estimated wait time is {count} minutes",
    "the conference has {count} participants",
    "you are now muted",
    "goodbye",
    "thank you goodbye",
    # home and devices
    "turn {onoff} the {device}",
    "turn {onoff} the {device} in the {room}",
    "turn {onoff} the {room} {device}",
    "set the temperature to {temp} degrees",
    "set the volume to {percent} percent",
    "play some {genre} music",
    "play {genre} music in the {room}",
    "stop the music",
    "what is the weather like {day}",
    "it will be {weather} {day}",
    "it is {temp} degrees and {weather}",
    # everyday sentences
    "i will meet you at {place} at {time}",
    "can you help me find my keys",
    "we need to buy {food} and {food}",
    "add {food} to my shopping list",
    "i would like some {food} please",
    "how long does it take to get to {place}",
    "{person} is waiting at {place}",
    "{person} will call you back {day}",
    "i am {adj} today",
    "we are going to {place} {day}",
    "the weather is {weather} today",
    "please close the door",
    "could you say that again please",
    "i do not understand",
    "thank you very much",
    "see you {day}",
    "good morning how are you",
    "have a nice day",
    "the bus is {adj} again",
    "where is the nearest {place_kind}",
    "how far is it to {place}",
    "it costs {money}",
    "my order number is {digits}",
)
_SLOTS["place_kind"] = ["bank", "station", "hospital", "pharmacy", "store", "park", "library"]

_SLOT_RE = re.compile(r"\{(\w+)\}")


@dataclass
class SentenceGenerator:
    """Natural-ish English sentences from templates; same seed, same sequence."""

    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"sentences-{self.seed}")

    def _fill(self, name: str) -> str:
        filler = _SLOTS[name]
        return filler(self.rng) if callable(filler) else self.rng.choice(filler)

    def sentence(self) -> str:
        template = self.rng.choice(_TEMPLATES)
        return normalize_text(_SLOT_RE.sub(lambda m: self._fill(m.group(1)), template))

    def __iter__(self):
        while True:
            yield self.sentence()


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """The first `n` sentences of `SentenceGenerator(seed)` (may repeat)."""
    gen = SentenceGenerator(seed)
    return [gen.sentence() for _ in range(n)]



def _draw_texts(
    n: int, stream: str, seed: int, exclude: set[str], max_tries_per_text: int = 50
) -> list[str]:
    """`n` sentences not in `exclude` and, while the generator allows, unique."""
    gen = SentenceGenerator(seed=hash_seed(f"{seed}-{stream}"))
    out: list[str] = []
    seen = set(exclude)
    misses = 0
    while len(out) < n:
        s = gen.sentence()
        if s not in seen:
            out.append(s)
            seen.add(s)
            misses = 0
        else:
            misses += 1
            if misses > max_tries_per_text:  # generator exhausted: accept repeats, never excluded
                if s not in exclude:
                    out.append(s)
                misses = 0
    return out


def hash_seed(s: str) -> int:
    """Stable 32-bit seed from a string (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha1(s.encode()).digest()[:4], "little")



def draw_mixed_texts(
    n: int, split: str, seed: int, mix: Mapping[str, float], exclude: set[str]
) -> tuple[list[str], list[str]]:
    """`n` texts for `split` from the sources in `mix` (name -> weight: "templates" or a
    `natural_sentences` source) -> (texts, source of each).

    Text i depends only on (seed, split, i): the source of each index comes from one RNG stream,
    the k-th text of a source from that source's own shuffled sentences (or template stream).
    Natural sentences already belong to one split (by hash); valid/test never repeat one and
    fail when a source runs out, train starts over (the same sentence in another voice).
    """
    names = [k for k, w in mix.items() if w > 0]
    if not names:
        raise ValueError(f"no text source with a positive weight in {dict(mix)}")
    if names == ["templates"]:
        return _draw_texts(n, split, seed, exclude), ["templates"] * n
    r = random.Random(f"{seed}-{split}-text-source")
    sources = r.choices(names, weights=[mix[k] for k in names], k=n)
    picked: dict[str, list[str]] = {}
    for name in names:
        count = sources.count(name)
        if name == "templates":
            picked[name] = _draw_texts(count, split, seed, exclude)
            continue
        pool = [t for t in natural_sentences(name)[split] if t not in exclude]
        random.Random(f"{seed}-{split}-{name}").shuffle(pool)
        if count > len(pool) and (split != "train" or not pool):
            raise ValueError(f"{split}: {count} sentences asked of text source {name!r}, which has "
                             f"{len(pool)} for this split; ask for fewer or give it less weight")
        picked[name] = [pool[k % len(pool)] for k in range(count)]
    taken = dict.fromkeys(names, 0)
    texts = []
    for name in sources:
        texts.append(picked[name][taken[name]])
        taken[name] += 1
    return texts, sources
