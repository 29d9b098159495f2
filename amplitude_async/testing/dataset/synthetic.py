"""The synthetic generator: a deterministic, plausible product's event log from a seed."""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from .records import BUILTIN_USER_PROPERTIES, Cohort, Value, _to_ms
from .store import Dataset, _Builder

# -- synthetic data -------------------------------------------------------------------------

# (country, region, city, DMA, language, weight)
_PLACES: Final = (
    ("United States", "California", "San Francisco", "San Francisco-Oakland-San Jose, CA",
     "English", 9),
    ("United States", "New York", "New York", "New York, NY", "English", 10),
    ("United States", "Texas", "Austin", "Austin, TX", "English", 5),
    ("United States", "Illinois", "Chicago", "Chicago, IL", "English", 5),
    ("United Kingdom", "England", "London", None, "English", 8),
    ("Germany", "Berlin", "Berlin", None, "German", 6),
    ("Germany", "Bavaria", "Munich", None, "German", 3),
    ("France", "Île-de-France", "Paris", None, "French", 5),
    ("Canada", "Ontario", "Toronto", None, "English", 4),
    ("Brazil", "São Paulo", "São Paulo", None, "Portuguese", 4),
    ("India", "Maharashtra", "Mumbai", None, "English", 5),
    ("Japan", "Tokyo", "Tokyo", None, "Japanese", 4),
    ("Australia", "New South Wales", "Sydney", None, "English", 3),
)  # fmt: skip

# (platform, os_name, os_version, device family, device type, weight)
_DEVICES: Final = (
    ("iOS", "ios", "17.5", "Apple iPhone", "Apple iPhone 15", 18),
    ("iOS", "ios", "16.7", "Apple iPhone", "Apple iPhone 13", 9),
    ("iOS", "ios", "17.5", "Apple iPad", "Apple iPad Air", 3),
    ("Android", "android", "14", "Samsung Galaxy", "Samsung Galaxy S23", 12),
    ("Android", "android", "13", "Google Pixel", "Google Pixel 7", 6),
    ("Android", "android", "12", "Xiaomi Redmi", "Xiaomi Redmi Note 11", 5),
    ("Web", "Chrome", "126", "Mac", "Mac", 8),
    ("Web", "Chrome", "126", "Windows", "Windows", 7),
    ("Web", "Safari", "17", "Mac", "Mac", 4),
    ("Web", "Firefox", "127", "Linux", "Linux", 1),
)

_AGE_GROUPS: Final = ("18-24", "25-34", "35-44", "45-54", "55+")
_AGE_WEIGHTS: Final = (18, 34, 24, 14, 10)
_INTERESTS: Final = ("books", "music", "games", "outdoors", "cooking", "tech", "fashion")
_CATEGORIES: Final = ("books", "music", "games", "outdoors", "kitchen", "electronics")
_SEARCH_TERMS: Final = (
    "headphones", "tent", "novel", "vinyl", "blender", "keyboard", "jacket", "lamp", "puzzle",
    "guitar", "camera", "kettle", "boots", "backpack", "mouse", "speaker", "chess", "poster",
    "cookbook", "drone",
)  # fmt: skip
_N_ITEMS: Final = 120
_VERSIONS: Final = ("3.2.0", "3.3.0", "3.4.0", "3.4.1")
# hour-of-day weights of session starts: quiet nights, a lunch bump, a strong evening peak
_HOUR_WEIGHTS: Final = (
    1, 1, 1, 1, 1, 2, 3, 5, 7, 7, 7, 8, 10, 9, 7, 7, 8, 9, 11, 13, 14, 12, 8, 4,
)  # fmt: skip

SIGN_UP: Final = "Sign Up"
COMPLETE_PROFILE: Final = "Complete Profile"
OPEN_APP: Final = "Open App"
SEARCH: Final = "Search"
VIEW_ITEM: Final = "View Item"
ADD_TO_CART: Final = "Add to Cart"
PURCHASE: Final = "Purchase"
SHARE: Final = "Share"
RATE_ITEM: Final = "Rate Item"


def _cumulative(weights: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


_CUSTOM_USER_PROPERTIES: Final = ("gp:age_group", "gp:interests", "gp:plan")
# the rates and shapes of the generator's draws (see _Generator)
_UPGRADE_RATE: Final = 1 / 4
_DECAY_RATE: Final = 1 / 5
_BROWSE_RATE: Final = 1 / 2.0
_RATING_RATE: Final = 1 / 3
_ITEM_SKEW: Final = -1.0 / 1.2
_N_TERMS: Final = len(_SEARCH_TERMS)
_TERM_BITS: Final = _N_TERMS.bit_length()
_NV_MAGIC: Final = 4 * math.exp(-0.5) / math.sqrt(2.0)


def _below(getrandbits: Callable[[int], int], n: int) -> int:
    """A uniform draw from ``range(n)`` exactly as ``random.Random.randrange(n)`` makes it."""
    bits = n.bit_length()
    r = getrandbits(bits)
    while r >= n:
        r = getrandbits(bits)
    return r


def _uuid4_text(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))``, without building the UUID."""
    bits = (bits & ~(0xC000 << 48) | 0x8000 << 48) & ~(0xF000 << 64) | 4 << 76
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class SyntheticDataset(Dataset):
    """A deterministic, plausible product's event log (see the module docstring).

    ``users`` users sign up over ``days`` local days from ``start``; each keeps coming back
    with a decaying probability, so about 10 events per user for a 30-day set. The same
    arguments always give the same events.

    Built-in cohorts: ``purchasers`` (bought at least once), ``power-users`` (active on 5 or
    more days), ``mobile`` (iOS or Android). Built-in charts: ``daily-signups``,
    ``purchases-by-country``, ``active-users`` (see :func:`builtin_charts`).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        users: int = 1000,
        days: int = 30,
        start: date = date(2026, 9, 1),
        tz: str | None = None,
    ) -> None:
        if users < 1 or days < 1:
            raise ValueError("a synthetic dataset needs at least one user and one day")
        self.seed = seed
        zone = ZoneInfo(tz) if tz else UTC
        midnights = [
            _to_ms(datetime(d.year, d.month, d.day, tzinfo=zone))
            for d in (start + timedelta(days=k) for k in range(days + 1))
        ]
        builder = _Builder()
        end = start + timedelta(days=days - 1)
        _Generator(random.Random(seed), builder, midnights).run(users)
        super().__init__(builder, tz=tz, start=start, end=end)
        self.cohorts = {c.id: c for c in self._builtin_cohorts()}
        self.charts = builtin_charts(start, end)

    def _builtin_cohorts(self) -> list[Cohort]:
        purchase = self.type_ids.get(PURCHASE)
        buyers = (
            {self.amplitude_ids[self.user[i]] for i in self.type_events[purchase]}
            if purchase is not None
            else set()
        )
        power, mobile = set(), set()
        platform_slot = self.prop_index["platform"]
        day = self.day
        for u, events in enumerate(self.user_events):
            if len(set(map(day.__getitem__, events))) >= 5:
                power.add(self.amplitude_ids[u])
            if events and self.ustates[self.ustate[events[0]]][platform_slot] in ("iOS", "Android"):
                mobile.add(self.amplitude_ids[u])
        return [
            Cohort("purchasers", "Purchasers", frozenset(buyers)),
            Cohort("power-users", "Power users (active 5+ days)", frozenset(power)),
            Cohort("mobile", "Mobile users", frozenset(mobile)),
        ]


def builtin_charts(start: date, end: date) -> dict[str, Any]:
    """The saved charts of a synthetic project, as query objects over ``start``..``end`` (at
    most its last 365 days)."""
    from amplitude_async import queries  # a cycle-free late import: queries never imports us
    from amplitude_async.values import Event

    # A daily chart covers at most a year (the API's span limit): the last year of the data.
    start = max(start, end - timedelta(days=queries.DAILY_MAX_DAYS - 1))
    return {
        "daily-signups": queries.EventSegmentation(
            events=(Event(SIGN_UP),), start=start, end=end, metric="uniques"
        ),
        "purchases-by-country": queries.EventSegmentation(
            events=(Event(PURCHASE),), start=start, end=end, metric="totals", group_by=("country",)
        ),
        "active-users": queries.ActiveUsers(start=start, end=end),
    }


class _Generator:
    """Writes a synthetic product's events into a builder (one pass, users in order).

    Draws come straight from :class:`random.Random` (``random``/``getrandbits``) with the
    arithmetic of its ``expovariate``, ``lognormvariate``, ``paretovariate``, ``randrange``
    and ``sample`` written out in place: at a million events those calls were a large share
    of the build time. The draws and their order are those methods' own, so a seed keeps its events.
    """

    def __init__(self, rng: random.Random, builder: _Builder, midnights: list[int]) -> None:
        self.rng = rng
        self.b = builder
        self.midnights = midnights
        self.days = len(midnights) - 1
        self.place_cum = _cumulative(p[-1] for p in _PLACES)
        self.device_cum = _cumulative(d[-1] for d in _DEVICES)
        self.age_cum = _cumulative(_AGE_WEIGHTS)
        self.hour_cum = _cumulative(_HOUR_WEIGHTS)
        # later versions ship during the period; the first one predates it
        self.releases = [0] + [
            max(1, round(self.days * k / len(_VERSIONS))) for k in range(1, len(_VERSIONS))
        ]
        self.types = {name: builder.type_index(name) for name in _EVENT_TYPES}
        # user states are interned as rows in slot order: the built-in properties, then ours
        for key in _CUSTOM_USER_PROPERTIES:
            builder.prop_slot(key)
        if tuple(builder.prop_index) != BUILTIN_USER_PROPERTIES + _CUSTOM_USER_PROPERTIES:
            raise RuntimeError("a synthetic dataset needs a fresh builder")
        self.items = [
            {
                "item_id": f"sku-{k:04d}",
                "category": _CATEGORIES[k % len(_CATEGORIES)],
                "price": round(4.99 + (k * 7919 % 97) * 1.5, 2),
            }
            for k in range(_N_ITEMS)
        ]
        # event properties are drawn from small sets; interning by a cheap key skips
        # building (and hashing) a dict for the vast majority of events
        self.eprops_cache: dict[tuple[Any, ...], int] = {}

    def run(self, users: int) -> None:
        for n in range(users):
            self.user(n)

    def user(self, n: int) -> None:
        rng, b = self.rng, self.b
        random_, getrandbits, log, exp = rng.random, rng.getrandbits, math.log, math.exp
        amplitude_id = 100_000_000_000 + n
        anonymous = random_() < 0.1
        user = b.user_index(amplitude_id, None if anonymous else f"user{n:06d}")
        device = b.device_index(_uuid4_text(getrandbits(128)))
        country, region, city, dma, language, _ = _PLACES[
            bisect_right(self.place_cum, random_() * self.place_cum[-1])
        ]
        platform, os_name, os_version, family, model, _ = _DEVICES[
            bisect_right(self.device_cum, random_() * self.device_cum[-1])
        ]
        age = _AGE_GROUPS[bisect_right(self.age_cum, random_() * self.age_cum[-1])]
        # rng.sample(_INTERESTS, rng.randint(1, 3)), drawn the way those methods draw
        pool = list(_INTERESTS)
        picked = []
        for i in range(1 + _below(getrandbits, 3)):
            j = _below(getrandbits, len(pool) - i)
            picked.append(pool[j])
            pool[j] = pool[len(pool) - i - 1]
        interests = tuple(sorted(picked))
        # sign-ups grow a little over the period
        signup = min(int(self.days * random_() ** 0.85), self.days - 1)
        version_at_signup = max(v for v, day in enumerate(self.releases) if day <= signup)
        upgrades = [
            (self.releases[v] + int(-log(1.0 - random_()) / _UPGRADE_RATE), v)
            for v in range(version_at_signup + 1, len(_VERSIONS))
        ]
        activated = random_() < 0.62
        buyer = activated and random_() < 0.5
        engagement = 0.15 + 0.45 * random_()
        decay = 1.0 + -log(1.0 - random_()) / _DECAY_RATE
        # a user state row in slot order: version, the fixed properties, paying, custom ones
        fixed = (
            country, city, region, dma, platform, f"{os_name} {os_version}", family, model,
            language, _VERSIONS[version_at_signup],
        )  # fmt: skip
        plan = "plus" if n % 3 else "pro"
        states: dict[tuple[int, bool], int] = {}

        def ustate(version: int, paying: bool) -> int:
            index = states.get((version, paying))
            if index is None:
                row = (
                    _VERSIONS[version],
                    *fixed,
                    paying,
                    age,
                    interests,
                    plan if paying else "free",
                )
                index = states[version, paying] = b.ustate_row_index(row)
            return index

        add_time, add_user, add_type = b.time.append, b.user.append, b.type.append
        add_session, add_device = b.session.append, b.device.append
        add_ustate, add_eprops = b.ustate.append, b.eprops.append
        types, midnights, flow = self.types, self.midnights, self.flow
        eprops_cache = self.eprops_cache
        hour_cum = self.hour_cum
        hour_total = hour_cum[-1]
        paying = False
        profile_done = False
        end_ms = midnights[-1]
        for day in range(signup, self.days):
            age_days = day - signup
            if age_days and random_() >= engagement * exp(-age_days / decay) + 0.015:
                continue
            version = version_at_signup
            for when, v in upgrades:
                if when <= day:
                    version = v
            state = ustate(version, paying)
            sessions = 1 + (random_() < 0.25) + (random_() < 0.06)
            midnight = midnights[day]
            clock = midnight
            for s in range(sessions):
                hour = bisect_right(hour_cum, random_() * hour_total)
                t = midnight + hour * 3_600_000 + int(random_() * 3_600_000)
                if t < clock:
                    t = clock
                session_id = t
                kind = random_()
                # most sessions are brisk; a few linger, which gives lengths a heavy tail
                gap_scale = 12_000 if kind < 0.72 else (70_000 if kind < 0.95 else 420_000)
                for k, name in enumerate(flow(age_days == 0 and s == 0)):
                    if name == COMPLETE_PROFILE:
                        if profile_done or not (activated or random_() < 0.05):
                            continue
                        profile_done = True
                    elif name == PURCHASE and not (buyer and random_() < 0.8):
                        continue
                    if k:
                        # a log-normal gap: lognormvariate(0, 1)'s ratio-of-uniforms draw
                        while True:
                            u1 = random_()
                            u2 = 1.0 - random_()
                            z = _NV_MAGIC * (u1 - 0.5) / u2
                            if z * z / 4.0 <= -log(u2):
                                break
                        gap = int(exp(z) * gap_scale)
                        t += gap if gap < 1_500_000 else 1_500_000
                    if t >= end_ms:
                        break
                    add_time(t)
                    add_user(user)
                    add_type(types[name])
                    add_session(session_id)
                    add_device(device)
                    add_ustate(state)
                    # the event's properties, drawn here (not in a method) for speed
                    key: tuple[Any, ...]
                    if name in _ITEM_EVENTS:
                        # a Pareto draw: a few items are hits
                        item = int((1.0 - random_()) ** _ITEM_SKEW) - 1
                        if item >= _N_ITEMS:
                            item = _N_ITEMS - 1
                        if name == VIEW_ITEM:
                            key = (name, item)
                        elif name == ADD_TO_CART:
                            key = (name, item, 1 + (random_() < 0.2))
                        elif name == PURCHASE:
                            key = (name, item, 1 + (random_() < 0.15), random_() < 0.7)
                        elif name == SHARE:
                            key = (name, item, _below(getrandbits, 4))
                        else:  # RATE_ITEM
                            rating = 1 + int(-log(1.0 - random_()) / _RATING_RATE)
                            key = (name, item, min(5, rating), _below(getrandbits, 6))
                    elif name == SEARCH:
                        term = getrandbits(_TERM_BITS)
                        while term >= _N_TERMS:
                            term = getrandbits(_TERM_BITS)
                        results = getrandbits(6)
                        while results >= 40:
                            results = getrandbits(6)
                        key = (name, term, results)
                    elif name == OPEN_APP:
                        key = (name, random_() < 0.2)
                    elif name == SIGN_UP:
                        key = (name, _below(getrandbits, 3))
                    else:  # COMPLETE_PROFILE
                        key = (name, 3 + _below(getrandbits, 6))
                    eprops = eprops_cache.get(key)
                    if eprops is None:
                        eprops = eprops_cache[key] = b.eprops_index(self.props_of(key))
                    add_eprops(eprops)
                    if name == PURCHASE and not paying:
                        paying = True
                        state = ustate(version, paying)
                clock = t + 1_800_000

    def flow(self, first: bool) -> list[str]:
        """The event types of one session, from a small Markov chain of browsing."""
        random_ = self.rng.random
        steps = [SIGN_UP, COMPLETE_PROFILE] if first else [OPEN_APP]
        if not first and random_() < 0.08:
            steps.append(COMPLETE_PROFILE)
        current = SEARCH if random_() < 0.5 else VIEW_ITEM
        for _ in range(1 + int(-math.log(1.0 - random_()) / _BROWSE_RATE)):
            steps.append(current)
            r = random_()
            if current == SEARCH:
                current = VIEW_ITEM if r < 0.8 else SEARCH
            elif current == VIEW_ITEM:
                if r < 0.4:
                    current = VIEW_ITEM
                elif r < 0.65:
                    current = ADD_TO_CART
                elif r < 0.8:
                    current = SEARCH
                else:
                    current = SHARE if r < 0.9 else RATE_ITEM
            elif current == ADD_TO_CART:
                current = PURCHASE if r < 0.6 else VIEW_ITEM
            else:
                current = VIEW_ITEM if r < 0.7 else SEARCH
        return steps

    def props_of(self, key: tuple[Any, ...]) -> dict[str, Value]:
        name = key[0]
        if name in _ITEM_EVENTS:
            props = dict(self.items[key[1]])
            if name == ADD_TO_CART:
                props["quantity"] = key[2]
            elif name == PURCHASE:
                props["quantity"] = key[2]
                props["revenue"] = round(props["price"] * key[2], 2)
                props["payment_method"] = "card" if key[3] else "paypal"
            elif name == SHARE:
                props["channel"] = ("link", "email", "whatsapp", "instagram")[key[2]]
            elif name == RATE_ITEM:
                props["rating"] = key[2]
                props["tags"] = list(_TAG_PAIRS[key[3]])
            return props
        if name == SEARCH:
            return {"query": _SEARCH_TERMS[key[1]], "results": key[2]}
        if name == SIGN_UP:
            return {"method": ("email", "google", "apple")[key[1]]}
        if name == OPEN_APP:
            return {"source": "push" if key[1] else "organic"}
        if name == COMPLETE_PROFILE:
            return {"fields_filled": key[1]}
        return {}


_EVENT_TYPES: Final = (
    SIGN_UP,
    COMPLETE_PROFILE,
    OPEN_APP,
    SEARCH,
    VIEW_ITEM,
    ADD_TO_CART,
    PURCHASE,
    SHARE,
    RATE_ITEM,
)
_ITEM_EVENTS: Final = frozenset((VIEW_ITEM, ADD_TO_CART, PURCHASE, SHARE, RATE_ITEM))
_TAG_PAIRS: Final = (
    ("cheap", "fast"),
    ("fast", "quality"),
    ("gift", "quality"),
    ("cheap", "gift"),
    ("fast", "gift"),
    ("cheap", "quality"),
)
