"""Postal addresses in free text: a street (a house number and a street word in any of the languages below, or a
number, a capitalised name and a number followed by the rest of an address), PO boxes and military addresses,
then everything that follows on the same line or the next lines while it still looks like an address (units,
places, state codes, postcodes, countries). Recall first: an address cue ("I live at", "ship to", "address:")
followed by something with a house number is an address even when its street word is unknown.
"""

from __future__ import annotations

import regex as re

from builders.pii.prefilter import matches_at

# USPS Publication 28, Appendix C1 (street suffixes: names and standard abbreviations), and common UK names.
USPS_SUFFIXES = """
allee alley ally aly anex annex annx anx arc arcade av ave aven avenu avenue avn avnue bayou bayoo byu bch beach bend bnd
blf bluf bluff bluffs blfs bot btm bottm bottom blvd boul boulevard boulv br brnch branch brg brdge bridge brk brook
brooks brks burg bg burgs bgs byp bypa bypas bypass byps camp cp cmp canyn canyon cnyn cyn cape cpe causeway causwa cswy
cen cent center centr centre cnter cntr ctr centers ctrs cir circ circl circle crcl crcle circles cirs clf cliff clfs
cliffs clb club common cmn commons cmns cor corner corners cors course crse court ct courts cts cove cv coves cvs creek
crk crescent cres crsent crsnt crest crst crossing crssng xing crossroad xrd crossroads xrds curve curv dale dl dam dm
div divide dv dvd dr driv drive drv drives drs est estate estates ests exp expr express expressway expw expy ext
extension extn extnsn exts fall falls fls ferry frry fry field fld fields flds flat flt flats flts ford frd fords frds
forest forests frst forg forge frg forges frgs fork frk forks frks fort frt ft freeway freewy frway frwy fwy garden
gardn grden grdn gdn gardens gdns grdns gateway gatewy gatway gtway gtwy glen gln glens glns green grn greens grns grov
grove grv groves grvs harb harbor harbr hbr hrbor harbors hbrs haven hvn ht hts heights highway highwy hiway hiwy hway
hwy hill hl hills hls hllw hollow hollows holw holws inlt inlet island islnd islands islnds iss isle isles jct jction
jctn junction junctn juncton jctns jcts junctions key ky keys kys knl knol knoll knls knolls lk lake lks lakes land
landing lndg lndng lane ln lgt light lights lgts lf loaf lck lock lcks locks ldg ldge lodg lodge loop loops mall mnr
manor manors mnrs meadow mdw mdws meadows medows mews mill ml mills mls missn mssn msn motorway mtwy mnt mt mount mntain
mntn mountain mountin mtin mtn mntns mountains mtns nck neck nk orch orchard orchrd oval ovl overpass opas park prk parks
parkway parkwy pkway pkwy pky parkways pkwys pass passage psge path paths pike pikes pine pne pines pnes pl place plain
pln plains plns plaza plz plza point pt points pts port prt ports prts pr prairie prr rad radial radiel radl ramp ranch
ranches rnch rnchs rapid rpd rapids rpds rest rst rdg rdge ridge ridges rdgs riv river rvr rivr rd road roads rds route
rte row rue run shl shoal shoals shls shoar shore shr shoars shores shrs skyway skwy spg spng spring sprng spgs spngs
springs sprngs spur spurs sq sqr sqre squ square sqrs squares sta station statn stn stra strav straven stravenue
stravn strvn strvnue stream streme strm street strt st str streets sts smt sumit sumitt summit ter terr terrace
throughway trwy trace traces trce track tracks trak trk trks trafficway trfy trail trails trl trls trailer trlr trlrs
tunel tunl tunls tunnel tunnels tunnl trnpk turnpike turnpk upas underpass union unions valley vally vlly vly
valleys vlys vdct via viadct viaduct view vw views vws vill villag village villg villiage vlg villages vlgs ville vl
vis vist vista vst vsta walk walks wall wy way ways well wl wells wls
close gardens parade rise croft fold chase dene villas cottages wynd quay hill grove
""".split() + """
access amble approach brace brae stairs break broadway brow circuit circus concourse cross cul-de-sac dell edge entrance
esplanade fairway gate glade grange link nook outlook promenade ramble reserve retreat steps strip turn vale wharf
courtyard gully tarn lees hollow lodge lawn mead gate
marg nagar chowk ganj colony gali bazar bazaar
""".split()  # AS 4819 road types (Australia, used in the UK too); Indian street and locality words
# Words that start a street name in other languages ("Via Roma 12", "33 avenue de Provence", "ul. Zamkowa 33").
STREET_PREFIXES = """
rue avenue av bd boulevard chemin allée allee impasse place quai route cours passage square voie
via viale vicolo piazza piazzale piazzetta corso largo contrada strada borgo lungomare
calle avenida plaza paseo camino carrera carretera ronda rambla travesía travesia cañada callejón callejon glorieta
urbanización urbanizacion pasaje rúa rua travessa praça praca estrada alameda
ul ulica aleja al plac os osiedle odos leoforos platz straße strasse
rotonda stretto rione sentiero lungolago viottolo vía acceso cuesta partida polígono poligono bajada subida avda
sentier rond-point pasadizo incrocio vial
""".split()
# Street words written as the end of one word ("Kiannonkatu 98", "Schachterlweg 62", "Nohlmansstraße 4").
STREET_STEMS = """
straße strasse str gasse weg allee platz ring damm ufer steig pfad chaussee markt gatan gata vägen väg vej vegen veien
gade katu kuja tie polku kaari utca út tér körút laan straat plein gracht kade singel dijk
""".split()
UNITS = (r"(?:Apt|Apartment|Suite|Ste|Unit|Flat|Studio|Level|Room|Rm|Floor|Fl|Bldg|Building|Block|Plot|House|H\.[ \t]?No|Villa|Door|"
         r"Piso|Puerta|Piano|Appartamento|Interno|Esc|Escalera|Box|Lot|Dept|#)")

_SUFFIX = "|".join(sorted({re.escape(w) for w in USPS_SUFFIXES}, key=len, reverse=True))
_PREFIX = "|".join(sorted({re.escape(w) for w in STREET_PREFIXES}, key=len, reverse=True))
_STEM = "|".join(sorted({re.escape(w) for w in STREET_STEMS}, key=len, reverse=True))
NUM = r"(?<![\d.,])\d{1,6}[A-Za-z]?(?:[/-]\d{1,4}[A-Za-z]?)?"
# a house number that does not end a longer run of digit groups (the last group of a phone number)
HOUSE = r"(?<![\d.,])(?<!\d[ \t])\d{1,6}[A-Za-z]?(?:[/-]\d{1,4}[A-Za-z]?)?"
# Months, days, clock and unit words: "on 4 July 1776", "at 5 PM" and "250 ml" are not addresses.
_NOT_PLACE = (r"(?:January|February|March|April|May|June|July|August|September|October|November|December|Jan|Feb|Mar|"
              r"Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|AM|PM|"
              r"A\.M|P\.M|BC|AD|BCE|CE|GB|MB|KB|TB|GHz|MHz|USD|EUR|GBP|Celsius|Fahrenheit|Percent|Years?|Days?|Hours?|"
              r"Minutes?|Times?|Pages?|Chapters?|Steps?|Tips?|Ways?|Things?|Ideas?|Reasons?|Questions?|Examples?)")
# a word of a street or place name: starts with a letter, not a common English word (so "3 dogs and a Park" is
# not a street); particles of names in several languages are allowed
_STOP = (r"(?:and|or|the|a|an|in|on|at|to|for|with|off|out|up|down|my|your|our|his|her|their|its|is|are|was|were|be|of|from|by|about|"
         r"than|per|this|that|these|those|it|he|she|we|they|you|i|me|us|them|if|but|so|as|into|onto|after|before|"
         r"since|until|every|each|some|any|all|no|not|more|most|less|few|many|much|one|two|three|four|five|six|"
         r"seven|eight|nine|ten|years?|days?|hours?|minutes?|times?|people|items?|pieces?|steps?|ways?|hundreds?|"
         r"thousands?|millions?|billions?|trillions?|dozens?|percent|square|cubic|kilomet(?:er|re)s?|met(?:er|re)s?|miles?|"
         r"feet|foot|inch(?:es)?|yards?|acres?|hectares?|km|cm|mm|kg|lbs?|grams?|tons?|tonnes?|litres?|liters?|degrees?)")
_PARTICLE = r"(?:de|del|della|di|da|do|dos|das|du|des|la|le|les|van|von|der|den|y|e|el|al|of|the|upon|sur|am|an|zum|zur|u|v)"
_LETTERS = r"[\p{L}\p{M}]*(?:['’.-]\p{L}[\p{L}\p{M}]*)*"  # letters, with hyphens, apostrophes and dots inside
# (a dot only after an abbreviation such as "Mt.": a word with a full stop after it ends the sentence)
WORD = rf"(?:(?!{_STOP}\b)(?!{UNITS}\b)(?!{_NOT_PLACE}\b)(?:\p{{L}}{{1,3}}\.|\p{{L}}{_LETTERS}(?!\.))|{_PARTICLE})"
CAPWORD = rf"(?:(?!{_NOT_PLACE}\b)\p{{Lu}}{_LETTERS}\.?)"
PLACEWORD = rf"(?:(?!{_NOT_PLACE}\b)\p{{Lu}}{_LETTERS}(?!\w))"
SUFFIX_WORD = rf"(?i:{_SUFFIX})\b\.?"
STEM_WORD = rf"(?i:[^\W\d_][\w'-]*(?:{_STEM}))\b\.?"
PREFIX_WORD = rf"(?:(?i:(?:{_PREFIX}))\b\.?|C\.|Av\.|Avda\.)"

# A house number, then one to four name words and a street word ("4759 William Haven", "123 main st"), or a
# prefix street word and its name ("33 avenue de Provence"), then an optional number ("864 Piazzetta Scalette
# Rubiani 104").
_NUMBER_FIRST = (rf"\b{HOUSE},?(?:[ \t]+|[ \t]*\n[ \t]*)(?:\d{{1,5}}[A-Za-z]?,?[ \t]+)?(?:[NSEWnsew]\.?[ \t]+)?"
                 rf"(?:(?:{WORD}[ \t]+){{1,4}}?(?:{SUFFIX_WORD}|{STEM_WORD})|{STEM_WORD}|{PREFIX_WORD})"
                 rf"(?:[ \t]+(?:{_PARTICLE}[ \t]+)*{CAPWORD}){{0,4}}(?:,?[ \t]+{NUM}\b)?")
# A street name then a number ("Via Roma 131", "Kiannonkatu 98", "Calle de Nydia Ribes 28", "Rebecca Gully 5").
_NAME_FIRST = (rf"(?:\b(?:{CAPWORD}[ \t]+){{1,3}}?(?-i:\p{{Lu}})(?:{SUFFIX_WORD})|\b(?:{CAPWORD}[ \t]+){{0,3}}?{STEM_WORD}|"
               rf"(?<![\w.])(?:{PREFIX_WORD})(?:[ \t]+(?:{_PARTICLE}|{CAPWORD})){{1,5}}?)"
               rf",?[ \t]+{NUM}\b")
# Hungarian streets put a lower-case street word after the name ("Kálmán Imre u. 12.", "Rákóczi út 13.").
_HUNGARIAN = rf"\b(?:{CAPWORD}[ \t]+){{1,3}}(?:u\.|út|tér|utca|körút|krt\.)[ \t]+{NUM}\b\.?"
STREET = re.compile(rf"{_NUMBER_FIRST}|{_NAME_FIRST}|{_HUNGARIAN}")
# An address written all in lower case ("12 oak st") needs a street word that is no ordinary word in prose.
LOWER_STREET = re.compile(r"\b(?:street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|court|ct|terrace|ter|parkway|"
                          r"pkwy|highway|hwy|circle|cir|apt|suite|unit|straße|strasse|rue|calle|via)\b")
# Where someone is, a street with no number is enough ("I'm outside rue de Caron", "near Calle Mayor"); only
# street words that are no English words count here.
NAMED_STREET = re.compile(rf"(?:(?i:\b(?:at|to|on|near|outside|was|in|is)[ \t]+)|(?m:^[ \t]*))((?i:rue|avenue|boulevard|chemin|allée|impasse|quai|"
                          rf"calle|avenida|paseo|camino|viale|vicolo|piazza|piazzale|corso|contrada|rúa|rua|travessa|praça|ulica|"
                          rf"ul\.)(?:[ \t]+(?:{_PARTICLE}[ \t]+)*{CAPWORD}){{1,4}})")
# A number and capitalised words with or without a number after them ("4923 Parmova 109", "687 Rebecca Gully"):
# an address only after an address cue or when more of an address follows.
NUMBERED_NAME = re.compile(rf"\b{NUM},?(?:[ \t]+|[ \t]*\n[ \t]*)(?:\d{{1,4}}[ \t]+)?(?:{CAPWORD}[ \t]+){{0,2}}{CAPWORD}(?:[ \t]+{NUM}\b)?")
PO_BOX = re.compile(r"\b(?:P\.?[ \t]?O\.?[ \t]?Box|Post[ \t]Office[ \t]Box|PO[ \t]Box|Postfach|Apartado|Casella[ \t]postale)[ \t]*\d+"
                    r"|\b(?:PSC|Unit|CMR)[ \t]+\d{3,5},?[ \t]+Box[ \t]+\d{3,5}"
                    r"|\b(?:USNS|USNV|USS|USCGC)[ \t]+\p{Lu}[\w'’-]+(?:[ \t]+\p{Lu}[\w'’-]+)?"
                    r"|\b(?:APO|FPO|DPO)[ \t]+(?:AA|AE|AP)[ \t]+\d{5}")
UNIT = re.compile(rf"{UNITS}\.?[ \t]*(?:No\.?[ \t]*)?#?[ \t]*\d+[A-Za-z]?\b|{UNITS}\.?[ \t]+[A-Z]\b")
# A unit, then a street on the same or the next line ("Flat 65\nRoberts Lock", "Suite 500 9 Smith Entrance").
UNIT_FIRST = re.compile(rf"(?:{UNIT.pattern}),?(?:[ \t]+|[ \t]*\n[ \t]*)(?:{NUM}[ \t]+)?(?:\p{{Lu}}{_LETTERS}[ \t]+){{0,3}}\p{{Lu}}{_LETTERS}(?!\w)")
POSTCODE = (r"(?:\b\p{Lu}{1,2}\d[\p{Lu}\d]?[ \t]?\d\p{Lu}{2}\b|\b\p{Lu}\d\p{Lu}[ \t]?\d\p{Lu}\d\b|"
            r"\b\d{3,6}(?:[ -]\d{2,4})?(?:[ \t]\p{Lu}{2}\b)?)")
POSTCODE_RE = re.compile(POSTCODE)
# What may follow a street on the same or the next lines: units, postcodes, state codes, places (capitalised
# words, or a whole line in upper case), each after a comma, a newline (or a blank line) or spaces.
_PLACE = rf"(?:{PLACEWORD}|\p{{Lu}}{{2,}})(?:[ \t'-]+(?:{_PARTICLE}[ \t]+)?(?:{PLACEWORD}|\([^)\n]{{1,30}}\))){{0,4}}"
CONTINUATION = re.compile(rf"(?:[ \t]*,[ \t]*|[ \t]*-[ \t]*|[ \t]*\n(?:[ \t]*\n)?[ \t]*(?:[^\w\s]{{1,3}}[ \t]*)?(?:,[ \t]*)?|[ \t]+)"
                          rf"(?:{UNIT.pattern}|{POSTCODE}|nan\b|{_PLACE})")
# An address cue: what follows, up to the end of the clause, is an address if a house number comes early in it.
CUE = re.compile(r"(?i)\b(?:(?:home|billing|mailing|postal|street|shipping|delivery|new|old|my|his|her|their|our|the)[ \t]+)?"
                 r"(?:address(?:es)?|addr\.?|adresse|dirección|direccion|indirizzo)(?:[ \t]+(?:is|was|of [\w.]+|to))?[ \t]*[:=]?[ \t]*\n?[ \t]*"
                 r"|\b(?:live[sd]?|living|reside[sd]?|residing|located|situated|staying)[ \t]+(?:at|on|in)[ \t]+"
                 r"|\b(?:ship(?:ped)?|send|sent|deliver(?:ed)?|mail(?:ed)?|return(?:ed)?|forward(?:ed)?|post(?:ed)?|move[sd]?|moving)"
                 r"(?:[ \t]+(?:it|them|this|that|the[ \t]+\w+|a[ \t]+new[ \t]+one|one))?[ \t]+to[ \t]+"
                 r"|\bmeet(?:[ \t]+(?:you|me|us))?[ \t]+at[ \t]+|\bI'?m[ \t]+(?:at|outside)[ \t]+|\b(?:near|outside)[ \t]+")
# what a cue captures: up to the end of the sentence or line ("." only when a space and a capital or the end follow)
CUE_TAIL = re.compile(r"[^\n?!;]*?(?=[ \t]*(?:\n\n|[?!;]|\.(?:[ \t]+\p{Lu}|[ \t]*$|\n)|$|[ \t]+(?:for|because|but|so|and I|and we|if|when|"
                      r"which|where|after|before|in case|as soon|tomorrow|yesterday|today|next|last|every|please|between|"
                      r"from[ \t]+\d|right[ \t]+now|now|and[ \t]+(?!\d)\p{Ll}+)\b))")
POSTCODE_LINE = re.compile(rf"(?m)^[ \t]*({POSTCODE}[ \t]+{PLACEWORD}(?:[ \t'-]+{PLACEWORD}){{0,3}})[ \t]*$")
LINE_ENDS = re.compile(r"[ \t]*(?:[,.]?[ \t]*(?:\n|$)|\?|,|\.)")
TWO_LETTERS = re.compile(r"[^\W\d_]{2}")
# a unit or a house number right before a street belongs to the address ("Flat 75L\nLeanne Dam", "808 Kálmán Imre u. 12.")
BEFORE_STREET = re.compile(rf"(?:(?:{UNIT.pattern})[ \t]*,?[ \t]*\n?|\b{HOUSE},?)[ \t]*$")
BEFORE_CUE = re.compile(r"(?i)(?:\b(?:at|to|address|near|outside|lives?|was|is)|:)[ \t]*\n?[ \t]*$")
DATE_START = re.compile(rf"\W*(?:the[ \t]+)?(?:\d{{1,2}}(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?)?{_NOT_PLACE}\b")
EARLY_NUMBER = re.compile(r"^\W*(?:\S+[ \t]+){0,3}?\S*\d")


# Where a STREET match may start. It starts at a house number (`\b` and a digit), or it is up to six words on one
# line ("Piazza della Signoria", "Calle de Nydia Ribes", each without spaces, separated by spaces or tabs) and then a
# number word: so it starts in one of the six words before a word that begins with a digit, on its line.
_WORD_ON_LINE = re.compile(r"[^ \t\n]+")
_WORD_START = re.compile(r"\b\w")
_DIGIT = re.compile(r"\d")
_HOUSE_START = re.compile(r"\b\d")
_NAME_WORDS_BEFORE_NUMBER = 6


def _streets(text: str):
    """STREET.finditer(text): the same matches, tried only where one may start (most words of a text with a
    number are far from it: measured, the whole pattern at every word was the address finder's largest cost)."""
    regions, line_words, last_end = [], [], 0
    for w in _WORD_ON_LINE.finditer(text):
        if "\n" in text[last_end:w.start()]:
            line_words = []
        if _DIGIT.match(text, w.start()):
            before = line_words[-_NAME_WORDS_BEFORE_NUMBER:]
            regions.append((before[0] if before else w.start(), w.start() + 1))
        line_words.append(w.start())
        last_end = w.end()
    starts = sorted({s.start() for a, b in regions for s in _WORD_START.finditer(text, a, b)}
                    | {s.start() for s in _HOUSE_START.finditer(text)})
    return matches_at(STREET, text, starts)


def find_addresses(text: str) -> list[tuple[int, int]]:
    """[start, end) spans of postal addresses."""
    if not any(map(str.isdigit, text)):  # every address but a street named with no number has a digit
        return [m.span(1) for m in NAMED_STREET.finditer(text)]
    spans = [m.span() for found in (_streets(text), PO_BOX.finditer(text), UNIT_FIRST.finditer(text)) for m in found
             if any(map(str.isupper, m.group())) or LOWER_STREET.search(m.group())]
    spans += [m.span(1) for m in NAMED_STREET.finditer(text)]
    # a "postcode town" line under a street line ("rue de Gillet\n56911 Lambertville")
    spans += [m.span(1) for m in POSTCODE_LINE.finditer(text) if any(b + 1 >= m.start() and b <= m.start() + 1 for _, b in spans)]
    for m in NUMBERED_NAME.finditer(text):
        end = _extend(text, m.end())
        if end > m.end() or _after_cue(text, m.start()):
            spans.append((m.start(), end))
    for m in CUE.finditer(text):
        tail = CUE_TAIL.match(text, m.end())
        if (tail and tail.end() > m.end() and EARLY_NUMBER.match(tail.group()) and TWO_LETTERS.search(tail.group())
                and not DATE_START.match(tail.group())):
            spans.append((m.end(), tail.end()))
    spans = _merge(spans)
    out = []
    for a, b in spans:
        # a unit line before the street belongs to the address too ("Flat 75L\nLeanne Dam")
        while (u := BEFORE_STREET.search(text[:a][-40:])):
            a = a - len(text[:a][-40:]) + u.start()
        out.append((a, _extend(text, b)))
    return _merge(out)


def _after_cue(text: str, start: int) -> bool:
    return bool(BEFORE_CUE.search(text[max(0, start - 30):start]))


def _extend(text: str, end: int, max_parts: int = 8) -> int:
    """Where an address that reaches `end` stops: units, places, state codes and postcodes after it, each
    after a comma, a newline or a space; a place is taken only if something address-like follows or it ends
    the text or the line, so the first words of an ordinary sentence are left alone."""
    for _ in range(max_parts):
        m = CONTINUATION.match(text, end)
        if not m:
            break
        part = m.group().strip(" \t\n,")
        is_place = not (UNIT.fullmatch(part) or POSTCODE_RE.fullmatch(part) or part == "nan")
        if is_place:
            rest = text[m.end():]
            line_ends = LINE_ENDS.match(rest) is not None
            joined_by_space = "\n" not in m.group() and "," not in m.group()
            # "… Suite 000 HUNDSHAGEN Upper Austria?" — upper case or followed by more address
            if joined_by_space and not (part.isupper() or line_ends or CONTINUATION.match(text, m.end())):
                break
            if not line_ends and not CONTINUATION.match(text, m.end()):
                break
            if len(part.split()) > 5:
                break
        end = m.end()
    return end


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]
