"""A PII probe with personal data that this project did not make up: Faker's values, nine locales, in requests.

The templates are written for this probe (support tickets, cover letters, signatures, reviews, forms, messages to
pass on); the values in them (names, addresses, phone numbers, card numbers, ...) come from Faker's locale data.
Every value is recorded with its entity type, so a scanner's leaks can be counted per type. Templates are split
in two halves by id: `dev` (even ids) may be read while improving the scanner, `test` (odd ids) is only scored.
Clean prompts (no personal data, some naming public figures) measure over-redaction.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "en_IN", "en_CA", "en_AU", "es_ES", "it_IT")

# {slot} names: person (full name), first, last, prefixed (title + last name), street (street line with number),
# address (full address on one line), address_block (full address, several lines), city, postcode, phone,
# card (digits as Faker gives them), card_grouped (in groups of four), email, ssn, ip, ipv6, iban, dob, passport, dl
TEMPLATES = [
    # support tickets
    "Hi, my order never arrived. It was supposed to go to {street}, {city}. Order placed by {person}, phone {phone}.",
    "I was charged twice on card {card}. Please refund the second charge. Thanks, {person}",
    "Can you update the shipping address on my account to {address}? The old one was {street}.",
    "My name is {person} and I can't log in. The account email is {email}. Please call me back on {phone}.",
    "Please cancel the subscription billed to {card_grouped}. Account holder: {person}.",
    "Hello support, the technician was supposed to come to {street} yesterday between 2 and 4 pm but nobody showed up. You can reach me at {phone}. {first}",
    "Refund request. Customer: {person}. Card ending in the full number {card}. Reason: damaged item.",
    "I moved! New address:\n{address_block}\nPhone: {phone}",
    "Our router at {ip} keeps dropping the connection since the update. Ticket opened by {person} ({email}).",
    "The invoice was sent to the wrong person. It should be addressed to {prefixed}, {address}.",
    "Please wire the deposit to IBAN {iban} in the name of {person}.",
    "My SSN is {ssn} and my date of birth is {dob}. Why does the form still say my identity can't be verified?",
    "Hey, can you help me write a complaint? My landlord {person} has not fixed the heating at {street} for three weeks.",
    "I need to change the phone number on file from {phone} to {phone2}.",
    "Write a polite reminder to {person} that the invoice for the kitchen work at {street} is overdue.",
    # cover letters, CVs, forms
    "Write a cover letter for a junior accountant role. My details: {person}, {address}, {phone}, {email}.",
    "Fix the formatting of my CV header:\n{person}\n{address_block}\n{phone} | {email}",
    "Applicant: {person}\nDate of birth: {dob}\nPassport no.: {passport}\nAddress: {address}",
    "Turn this into a reference letter: {person} worked for me for three years and was always on time. Contact me at {email} or {phone} if you have questions. - {person2}",
    "Name: {person}\nDOB: {dob}\nDriver's license: {dl}\nPhone: {phone}",
    "Please proofread: I, {person}, residing at {address}, hereby authorise my bank to release my statements.",
    "Rewrite this emergency contact list as a table: {person} (mother) {phone}; {person2} (neighbour) {phone2}.",
    "Summarize my application: I am {person}, born on {dob}, living at {street}, {postcode} {city}. My passport number is {passport}.",
    # signatures and e-mails
    "Can you make this e-mail sound friendlier?\n\nDear {prefixed},\nthe parts you ordered are late.\n\nBest regards,\n{person}\n{phone}",
    "Translate to Spanish:\n\nHi {first},\nsee you at the meeting on Monday.\nCheers,\n{first2}",
    "Shorten this signature:\n{person}\nSenior Project Manager\nTel. {phone}\nMobile {phone2}\n{email}\n{address}",
    "Reply to this message for me: \"Hello, this is {person}. I found your wallet near {street}. Call me at {phone}.\"",
    "Draft an e-mail to {person} at {email} asking whether the apartment on {street} is still available.",
    "Forward this to {first}: the meeting moved to Thursday. Her number is {phone} if you need it.",
    "{person}\n{street}\n{city} {postcode}\n\nTo whom it may concern, please find my complaint below.",
    # reviews and posts
    "Review by {person}: the hotel staff were lovely, but our room at the back was noisy. 3 stars.",
    "Is this review fair? \"{first} from the front desk was rude and {person} the manager did nothing.\"",
    "Write a thank-you note to our babysitter {person}, who looked after our kids all summer.",
    "Our plumber {person} did a great job; write a short testimonial I can post for him.",
    "Make this funnier: {first} and I have been married for ten years today!",
    # messages to pass on, lists, chats
    "Tell {person} that the car is ready for pickup at the garage on {street}.",
    "Attendees: {person}, {person2} and {person3}. Please write a summary of the meeting notes below.",
    "what should i get {first} for her birthday? she likes hiking and cooking",
    "I'm {first}, 34, and I want to start running. Give me a 6-week plan.",
    "My colleague {person} keeps taking credit for my work. How do I bring this up with my boss, {person2}?",
    "Help me reply to {person}, who asked to borrow money again. His number is {phone}.",
    "Please send the keys to {first} at {address}. She'll be home after 6.",
    "The contract lists {person} as the tenant at {address}. Is the deposit clause legal?",
    "Call {phone} and ask for {prefixed}. Write me a script for the call.",
    "This is {person}'s card: {card_grouped}, exp 09/27. Can you check if the number format is valid?",
    "Bank details for the transfer: {person}, IBAN {iban}. Please write a confirmation message.",
    "My SSN {ssn} appeared in a data breach notice. What should I do first?",
    "The login alert came from {ipv6}. Was that me? I was at home in {city} at the time.",
    "Write a birthday message for my friend {first} {last}, who turns 40 on Saturday.",
    "Pick-up details: {person}, {phone}, {address}. Make this a clear message for the courier.",
    "Can you check my math? {person} owes me $240 and {person2} owes me $115.",
    "Meeting notes: {first} will send the slides, {first2} books the room, {last} approves the budget.",
    "Please redact nothing and just fix the grammar: me and {person} goes to {street} every sunday.",
    "Compose a condolence card for the family of {person}.",
    "Text to send: Hi it's {first}, I'm outside {street}. Can you buzz me in?",
    "Our new hire {person} starts Monday; his badge photo is attached. Write a welcome post.",
    "Can you format this address for an envelope? {address}",
    "The delivery driver left the parcel with {person} at {street}. Write a message asking them to return it.",
    "My driver's license number is {dl} and it expires next month. How do I renew it online?",
    "Card: {card}\nName on card: {person}\nBilling address: {address}\nWhy was this payment declined?",
]

CLEAN = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Summarize the main causes of the French Revolution in five bullet points.",
    "What are ten good names for a coffee shop near a university?",
    "Translate 'Where is the train station?' into German, French and Italian.",
    "Explain how a credit card's interest is calculated when you only pay the minimum.",
    "Who painted the Mona Lisa, and why is it so famous?",
    "Give me a 3-day itinerary for Lisbon on a budget of 300 euros.",
    "Rewrite this sentence to sound more formal: we gotta ship the update by friday.",
    "Classify these reviews as positive or negative: 'loved it', 'never again', 'it was fine'.",
    "What did Albert Einstein win the Nobel Prize for?",
    "How many calories are in 200 grams of cooked rice?",
    "Write a haiku about autumn in Kyoto.",
    "Compare Python and Rust for writing a command-line tool.",
    "Extract all the dates from this text: The treaty was signed on 4 July 1776 and ratified in 1788.",
    "Which is bigger, 2^32 or 4,000,000,000?",
    "Draft an agenda for a 30-minute team meeting about the Q3 roadmap.",
    "Why did the Roman Empire split into East and West in 395 AD?",
    "Suggest a workout routine for someone who sits at a desk 8 hours a day.",
    "What is the population of Canada, roughly, and how has it changed since 2000?",
    "Write a product description for a stainless steel water bottle that holds 750 ml.",
    "Explain the plot of Hamlet to a ten-year-old.",
    "What are the symptoms of vitamin D deficiency?",
    "How do I convert 72 degrees Fahrenheit to Celsius?",
    "Write a limerick about a cat who learns to use a laptop.",
    "List the planets of the solar system in order from the Sun.",
    "What is the difference between a Roth IRA and a traditional IRA?",
    "Give me five interview questions for a senior data engineer.",
    "Why is the sky blue? Keep it under 100 words.",
    "Write a SQL query that returns the 10 customers with the highest total order value.",
    "Tell me about Marie Curie's research on radioactivity.",
    "Plan a vegetarian dinner party menu for 8 people.",
    "Explain what an IP address is and how DHCP assigns one.",
    "What happened at the Battle of Hastings in 1066?",
    "Is it safe to fly with a power bank of 20,000 mAh?",
    "Summarize Martin Luther King Jr.'s 'I Have a Dream' speech.",
    "How do I reset a router to its factory settings?",
    "What are the pros and cons of remote work for a team of 12?",
    "Write a cheerful birthday message for a coworker.",
    "Recommend three books similar to The Hobbit.",
    "What is the capital of Australia and why isn't it Sydney?",
    "How long does it take to walk 5 km at a normal pace?",
    "Describe the water cycle for a science class.",
    "Explain the offside rule in football.",
    "What does Shakespeare's Sonnet 18 mean?",
    "Convert this recipe from 4 servings to 10: 2 cups flour, 1 egg, 250 ml milk.",
    "Write a tweet announcing our app's version 2.4 release with dark mode.",
    "What is the tallest mountain in Europe?",
    "Give me a regex that matches a 5-digit number.",
    "What were Napoleon Bonaparte's biggest military mistakes?",
    "Brainstorm 8 themes for a company hackathon.",
]

# US driver's licence formats of a few states (AAMVA state formats): letter/digit patterns
_DL_FORMATS = ["A#######", "#########", "A###-###-##-###-#", "########", "A###-####-####", "A############", "##-###-####",
               "A##-##-####", "AA######"]


@dataclass
class ProbeText:
    text: str
    spans: list[dict] = field(default_factory=list)  # {"entity_type", "value"}
    template_id: int | None = None  # None: a clean prompt
    locale: str | None = None

    @property
    def half(self) -> str:
        return "clean" if self.template_id is None else ("dev" if self.template_id % 2 == 0 else "test")


def _single_line(address: str) -> str:
    return re.sub(r"\s*\n\s*", ", ", address.strip())


def _values(fake, us, rng: random.Random) -> dict[str, tuple[str, str]]:
    """slot -> (entity type, value) for one template instance; US identifiers (SSN) come from the US locale."""
    person = lambda: fake.name()  # noqa: E731
    street = fake.street_address()
    city, postcode = fake.city(), fake.postcode()
    block = fake.address()
    card = fake.credit_card_number()
    groups = " ".join(card[i:i + 4] for i in range(0, len(card), 4))
    dob = fake.date_of_birth(minimum_age=18, maximum_age=90)
    dob_text = rng.choice([dob.strftime("%m/%d/%Y"), dob.strftime("%d.%m.%Y"), dob.strftime("%B %d, %Y").replace(" 0", " "),
                           dob.isoformat(), dob.strftime("%d %B %Y").lstrip("0")])
    dl = "".join(rng.choice("ABCDEFGHJKLMNPRSTWY") if c == "A" else str(rng.randrange(10)) if c == "#" else c
                 for c in rng.choice(_DL_FORMATS))
    first2 = fake.first_name()
    prefix = rng.choice(["Mr.", "Mrs.", "Ms.", "Dr."])
    return {
        "person": ("PERSON", person()), "person2": ("PERSON", person()), "person3": ("PERSON", person()),
        "first": ("PERSON", fake.first_name()), "first2": ("PERSON", first2), "last": ("PERSON", fake.last_name()),
        "prefixed": ("PERSON", f"{prefix} {fake.last_name()}"),
        "street": ("STREET_ADDRESS", street), "address": ("STREET_ADDRESS", _single_line(block)),
        "address_block": ("STREET_ADDRESS", block), "city": ("LOCATION", city), "postcode": ("ZIP_CODE", postcode),
        "phone": ("PHONE_NUMBER", fake.phone_number()), "phone2": ("PHONE_NUMBER", fake.phone_number()),
        "card": ("CREDIT_CARD", card), "card_grouped": ("CREDIT_CARD", groups),
        "email": ("EMAIL_ADDRESS", fake.email()), "ssn": ("US_SSN", us.ssn()),
        "ip": ("IP_ADDRESS", fake.ipv4_public()), "ipv6": ("IP_ADDRESS", fake.ipv6()), "iban": ("IBAN_CODE", fake.iban()),
        "dob": ("DATE_OF_BIRTH", dob_text), "passport": ("PASSPORT", fake.passport_number()), "dl": ("US_DRIVER_LICENSE", dl),
    }


def generate(n: int = 1200, seed: int = 0, locales: tuple[str, ...] = LOCALES) -> list[ProbeText]:
    """`n` texts with personal data (templates in turn, a seeded locale each) followed by every clean prompt."""
    from faker import Faker

    rng = random.Random(seed)
    fakers = {}
    for loc in locales:
        fakers[loc] = Faker(loc)
        fakers[loc].seed_instance(seed)
    us = fakers.get("en_US") or Faker("en_US")
    out = []
    for k in range(n):
        tid = k % len(TEMPLATES)
        loc = rng.choice(locales)
        template = TEMPLATES[tid]
        values = _values(fakers[loc], us, rng)
        text, spans = template, []
        for slot in re.findall(r"\{(\w+)\}", template):
            entity, value = values[slot]
            text = text.replace("{" + slot + "}", value, 1)
            if entity != "LOCATION":  # a city alone is not personal; it is scored as part of an address
                spans.append({"entity_type": entity, "value": value})
            if slot in ("address", "address_block") and (postcode := _postcode_in(value)):
                spans.append({"entity_type": "ZIP_CODE", "value": postcode})
        out.append(ProbeText(text, spans, tid, loc))
    out += [ProbeText(t) for t in CLEAN]
    return out


def _postcode_in(address: str) -> str | None:
    """The postcode inside a Faker address (its last run of digits of 4-6, or a UK/CA-style code)."""
    m = re.findall(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b|\b[A-Z]\d[A-Z] ?\d[A-Z]\d\b|\b\d{4,6}\b", address)
    return m[-1] if m else None
