"""Writes the embedded sample (prompts.jsonl, demonstrations.jsonl, rankings.jsonl) from the templates below.

Written for this project; deterministic. Covers all ten Table 1 use cases, labeler plain / few-shot / user-based
prompts and API prompts, few-shot templates sharing a long preamble, one user above 200 prompts, personal data in
some prompts and demonstrations, and rankings with K from 4 to 9 including ties.
Run: python -m builders.sample.make_sample
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOPICS = ["a lighthouse", "the ocean", "a lost robot", "winter mornings", "a small bakery", "city traffic", "a dragon who fears fire",
          "first day at school", "a space station", "an old violin", "the desert at night", "a haunted library", "friendship",
          "a rainy Tuesday", "a chess tournament", "migrating birds", "a broken clock", "a mountain village", "the last train home",
          "a garden in spring", "a detective cat", "time travel", "a forgotten island", "moving to a new city"]
THINGS = ["a coffee shop", "a mobile game", "a yoga studio", "a bookstore", "a hiking club", "a podcast", "a bakery",
          "a newsletter", "a charity run", "a robotics club", "a food truck", "a language school"]
FACTS = [("Who wrote Hamlet?", "William Shakespeare wrote Hamlet, probably around 1600."),
         ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."),
         ("How does a rainbow form?", "A rainbow forms when sunlight is refracted, reflected and dispersed inside raindrops."),
         ("What is the speed of light?", "Light travels at about 299,792 kilometres per second in a vacuum."),
         ("Why do leaves change color in autumn?", "Chlorophyll breaks down in autumn, revealing yellow and orange pigments."),
         ("Who invented the telephone?", "Alexander Graham Bell is credited with patenting the first practical telephone in 1876."),
         ("What is the capital of Japan?", "Tokyo is the capital of Japan."),
         ("How do bees make honey?", "Bees collect nectar, break it down with enzymes and evaporate the water in the hive."),
         ("What causes earthquakes?", "Earthquakes are caused by the sudden release of stress along faults in the Earth's crust."),
         ("When did humans first land on the moon?", "Apollo 11 landed on the moon on July 20, 1969."),
         ("What is the chemical formula of water?", "Water is H2O: two hydrogen atoms bonded to one oxygen atom."),
         ("How many continents are there?", "There are seven continents."),
         ("Why is the ocean salty?", "Rivers carry dissolved minerals from rocks into the sea, where salt accumulates."),
         ("What does a CPU do?", "A CPU executes the instructions of computer programs."),
         ("Who was Marie Curie?", "Marie Curie was a physicist and chemist who pioneered research on radioactivity."),
         ("What is the tallest building in the world?", "The Burj Khalifa in Dubai is the tallest building in the world.")]
PASSAGES = [
    "The Amazon rainforest covers about 5.5 million square kilometres across nine countries. It produces a large share "
    "of the world's oxygen and is home to roughly ten percent of known species. Deforestation, mainly for cattle "
    "ranching, has removed about seventeen percent of the forest in the last fifty years.",
    "In 1928 Alexander Fleming noticed that mould had killed bacteria in one of his petri dishes. The mould produced "
    "a substance he named penicillin. It took until the 1940s for Howard Florey and Ernst Chain to turn it into a "
    "drug that could be mass produced, saving millions of lives during the Second World War.",
    "The town council met on Monday to discuss the new recycling program. Starting in March, households will receive "
    "separate bins for glass, paper and plastic. Collection will move from weekly to every two weeks, and the council "
    "expects the change to save 200,000 dollars a year.",
    "Octopuses have three hearts and blue blood. Two hearts pump blood through the gills, while the third pumps it to "
    "the rest of the body. Their blood uses a copper-based protein called hemocyanin, which carries oxygen well in "
    "cold water with little oxygen.",
    "Our quarterly results show revenue of 4.2 million euros, up twelve percent from last year. Costs rose by eight "
    "percent, driven by hiring in Berlin and Madrid. The board approved a new product line for the autumn and a "
    "dividend of 0.15 euros per share.",
]
FEWSHOT_PREAMBLE = (
    "You are a helpful assistant that writes short, catchy product descriptions for an online store. Each description "
    "must be under thirty words, mention one concrete benefit, and avoid exaggerated claims. Here are some examples.\n\n"
    "Product: Bamboo toothbrush\nDescription: A biodegradable handle and soft bristles for a gentle clean that is kind to the planet.\n\n"
    "Product: Wool hiking socks\nDescription: Merino wool keeps your feet warm, dry and blister-free on long trails.\n\n"
    "Product: Ceramic pour-over coffee dripper\nDescription: Brews a clean, bright cup in three minutes, no paper taste.\n\n"
)
FEWSHOT_PRODUCTS = ["Solar phone charger", "Cast iron skillet", "Noise-cancelling headphones", "Reusable beeswax wraps",
                    "Standing desk converter", "Kids' rain boots", "Electric kettle", "Yoga mat", "LED desk lamp",
                    "Insulated lunch bag", "Travel pillow", "Herb garden kit", "Wireless mouse", "Silk pillowcase",
                    "Camping hammock", "Glass water bottle", "Weighted blanket", "Pocket notebook", "Bike helmet", "Tea infuser"]
NAMES = [("Maria Lopez", "maria.lopez@example.com", "415-555-0134"), ("James O'Neill", "j.oneill@example.org", "(212) 555-0187"),
         ("Priya Raman", "priya.r@example.net", "650-555-0111"), ("Tom Becker", "tbecker@example.com", "303-555-0166"),
         ("Aisha Bello", "aisha.bello@example.com", "917-555-0142"), ("Chen Wei", "chen.wei@example.org", "206-555-0199")]


def _make_prompts(rng: random.Random):
    """(category, prompt text, good answer) triples, several shapes per category."""
    out = []
    for t in TOPICS:
        out.append(("Generation", f"Write a short poem about {t}.", f"Here is a short poem about {t}:\n\nQuiet lines of {t},\nheld in the morning light,\na small song that stays."))
        out.append(("Generation", f"Write a short story for children about {t}.", f"Once upon a time there was {t}. Every day it learned something new, and by the end of the story everyone in town had a friend."))
    for th in THINGS:
        out.append(("Generation", f"Write an Instagram caption announcing the opening of {th}.", f"Doors open Saturday! Come see {th} for yourself - first visitors get a surprise."))
        out.append(("Brainstorming", f"Give me 10 name ideas for {th}.", f"Ten name ideas for {th}: 1. Bright Corner 2. The Daily Spark 3. Second Wind 4. Open Door 5. Little Harbor 6. North Star 7. Common Ground 8. Fresh Start 9. Blue Fern 10. Good Company."))
        out.append(("Brainstorming", f"What are some ways to get more customers for {th}?", f"Ways to grow {th}: partner with neighbours, run a referral offer, post short videos weekly, host a launch event, and collect reviews."))
    for fn in ["reverses a linked list", "parses a CSV file into dictionaries", "computes the nth Fibonacci number",
               "removes duplicates from a list while keeping order", "validates an email address with a regex"]:
        out.append(("Generation", f"Write a Python function that {fn}.", f"def solution(data):\n    \"\"\"A function that {fn}.\"\"\"\n    ...\n    return data"))
    for q, a in FACTS:
        out.append(("Open QA", q, a))
        out.append(("Open QA", "Q: " + q + "\nA:", a))
    for i, p in enumerate(PASSAGES):
        out.append(("Summarization", f"Summarize this for a second-grade student:\n\n{p}", "In short: " + p.split(". ")[0] + "."))
        out.append(("Summarization", f"{p}\n\nTl;dr:", p.split(". ")[0] + "."))
        out.append(("Closed QA", f"Read the passage and answer the question.\n\n{p}\n\nQuestion: What is the main number mentioned in the passage?", "The passage mentions " + next((w for w in p.split() if any(c.isdigit() for c in w)), "no number") + "."))
        out.append(("Extract", f"Extract all names of people and places from the text below.\n\n{p}", "Names and places: " + ", ".join(w.strip(".,") for w in p.split() if w[:1].isupper())[:200]))
        out.append(("Rewrite", f"Rewrite the following paragraph in a formal academic tone:\n\n{p}", "In formal terms: " + p))
    for s in ["The meeting is moved to Friday.", "I really enjoyed the concert last night.", "Please send me the report before noon.",
              "Our store opens at nine every morning.", "The weather will be sunny tomorrow.", "Can you help me find the station?"]:
        out.append(("Rewrite", f"Translate this sentence to Spanish: {s}", "Traducción: " + s))
        out.append(("Rewrite", f"English: {s}\nFrench:", "En français : " + s))
        out.append(("Classification", f"Classify the sentiment of this sentence as positive, negative or neutral: {s}", "Neutral."))
    for code, lang in [("fn main() { println!(\"hi\"); }", "Rust"), ("print('hello')", "Python"), ("console.log('hi');", "JavaScript"),
                       ("#include <stdio.h>\nint main(){printf(\"hi\");}", "C")]:
        out.append(("Classification", f"{code}\n\nWhat language is the code above written in?", f"It is written in {lang}."))
    for msg in ["Your account has been suspended, click here to verify", "Lunch at 1pm tomorrow?", "You won a free iPhone!!!",
                "Minutes from today's meeting attached"]:
        out.append(("Classification", f"Is this message spam or not spam?\n\n\"{msg}\"", "Spam." if "!" in msg or "click" in msg else "Not spam."))
    for persona, line in [("a helpful travel agent", "I want a cheap weekend trip in May."), ("a grumpy wizard", "Can you teach me a spell?"),
                          ("a patient math tutor", "I don't understand fractions."), ("a ship's captain", "Where are we headed?"),
                          ("a friendly librarian", "Can you recommend a mystery novel?")]:
        out.append(("Chat", f"The following is a conversation with {persona}. The assistant is helpful, clever and friendly.\n\nHuman: Hello!\nAI: Hello! How can I help you today?\nHuman: {line}\nAI:", "Of course! Let's start with what you enjoy most, and I'll suggest something that fits."))
        out.append(("Chat", f"Let's role-play. You are {persona}. I say: {line}", "Ah, a fine question! Sit down and let me tell you what I know."))
    for q, opts, ans in [("What shape is the earth?", "A) A circle B) A sphere C) An ellipse D) A plane", "B) A sphere"),
                         ("Which gas do plants absorb?", "A) Oxygen B) Nitrogen C) Carbon dioxide D) Helium", "C) Carbon dioxide"),
                         ("Which is a mammal?", "A) Shark B) Dolphin C) Trout D) Octopus", "B) Dolphin")]:
        out.append(("Closed QA", f"Answer the following question: {q} {opts}", ans))
    for frag in ["start with where", "and then", "hmm ok", "the blue one", "again", "more of that", "page 2", "ok"]:
        out.append(("Other", frag, "Could you tell me a bit more about what you would like?"))
    return out


FORMS = ["poem", "short story", "limerick", "blog post", "speech", "song", "product description", "tweet thread"]
STYLES = ["for children", "in a humorous tone", "in the style of a news report", "with a twist ending", "in under 100 words",
          "for a wedding", "as a pirate would tell it", "for a company newsletter"]
CONCEPTS = ["compound interest", "photosynthesis", "black holes", "machine learning", "inflation", "the immune system",
            "plate tectonics", "the stock market", "climate change", "the internet", "electric cars", "vaccines", "gravity",
            "democracy", "recycling", "sleep"]
AUDIENCES = ["a five year old", "a high school student", "my grandmother", "a software engineer", "a new employee"]
ASKS = ["blog post topics", "gift ideas", "fundraising ideas", "team names", "interview questions", "weekend activities",
        "slogans", "side project ideas"]


def _api_prompt(cat: str, rng: random.Random) -> tuple[str, str]:
    """A fresh API-style prompt of the given use case, combined from the lists above."""
    topic, thing, concept = rng.choice(TOPICS), rng.choice(THINGS), rng.choice(CONCEPTS)
    if cat == "Generation":
        form, style = rng.choice(FORMS), rng.choice(STYLES)
        return f"Write a {form} about {topic} {style}.", f"A {form} about {topic}: the day began quietly, and {topic} waited."
    if cat == "Open QA":
        aud = rng.choice(AUDIENCES)
        return rng.choice([f"Explain {concept} to {aud}.", f"How does {concept} work?", f"What is {concept}?"]), f"{concept.capitalize()} is best understood step by step."
    if cat == "Brainstorming":
        n, ask = rng.randint(3, 15), rng.choice(ASKS)
        return f"List {n} {ask} for {thing}.", f"{n} {ask} for {thing}: start with a community event, a loyalty card, and a weekly challenge."
    if cat == "Chat":
        return (f"Human: Hi! I'm planning {thing} and feel nervous about {concept}.\nAI: That's exciting! What worries you most?\nHuman: "
                f"Mostly the cost.\nAI:", "Let's make a simple budget together, starting with the costs you already know.")
    if cat == "Rewrite":
        s = f"Our team will present the results about {concept} next week at {thing}."
        return rng.choice([f"Translate to German: {s}", f"Make this sound more casual: {s}", f"Fix the grammar: {s.replace('will', 'will will')}"]), s
    if cat == "Summarization":
        p = rng.choice(PASSAGES)
        return f"Summarize in one sentence for {rng.choice(AUDIENCES)}:\n\n{p}", p.split(". ")[0] + "."
    if cat == "Classification":
        return f"Is this review about {thing} positive or negative? \"The {topic} theme was {rng.choice(['great', 'awful', 'fine'])}.\"", "Positive."
    if cat == "Closed QA":
        p = rng.choice(PASSAGES)
        return f"{p}\n\nBased on the passage above, is {concept} mentioned? Answer yes or no.", "No."
    if cat == "Extract":
        p = rng.choice(PASSAGES)
        return f"List every number that appears in this text about {concept}:\n\n{p}", "The numbers are listed in order of appearance."
    return rng.choice(["hmm", "and", "next", "what about the other", f"{topic}?", "the", "continue please"]), "Could you say more?"


def _pii_prompts():
    out = []
    for name, email, phone in NAMES:
        first = name.split()[0]
        out.append(("Generation", f"Write an email to my colleague {name} ({email}) asking to move our meeting to Thursday.",
                    f"Hi {first},\n\nCould we move our meeting to Thursday? Let me know what works.\n\nBest regards"))
        out.append(("Generation", f"Draft a short reminder text to my neighbour {name}, phone {phone}, about the party on Saturday.",
                    f"Hi {first}! Just a reminder about the party on Saturday at 7. See you there!"))
        out.append(("Extract", f"Extract the contact details from this signature:\n\nBest,\n{name}\n{email}\n{phone}\n42 Elm Street, Springfield",
                    f"Name: {name}\nEmail: {email}\nPhone: {phone}\nAddress: 42 Elm Street, Springfield"))
    return out


def _worse(good: str, prompt: str, rng: random.Random) -> list[str]:
    """Completions of falling quality for rankings."""
    words = good.split()
    return [
        good,
        " ".join(words[: max(3, len(words) // 2)]),
        "I'm not sure, but " + good.lower(),
        "Sorry, I can't help with that.",
        prompt[:60] + " " + prompt[:60],
        "Here is something unrelated: the weather is nice today.",
        " ".join(rng.sample(words, len(words))) if len(words) > 3 else "?",
        good + " " + good,
        "ok",
    ]


def build(seed: int = 7, truth: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """The sample's three files as rows; `truth`, when given, is filled with each prompt's use case (prompt id ->
    Table 1 category, the one the prompt was drawn for), which the files do not carry."""
    rng = random.Random(seed)
    base = datetime(2021, 6, 1, tzinfo=timezone.utc)
    tmpl = _make_prompts(rng)
    pii = _pii_prompts()
    by_cat: dict[str, list] = {}
    for c, p, a in tmpl:
        by_cat.setdefault(c, []).append((c, p, a))
    # API prompts follow roughly the paper's Table 1 mix.
    weights = {"Generation": 45.6, "Open QA": 12.4, "Brainstorming": 11.2, "Chat": 8.4, "Rewrite": 6.6, "Summarization": 4.2,
               "Classification": 3.5, "Other": 3.5, "Closed QA": 2.6, "Extract": 1.9}
    cats, w = list(weights), list(weights.values())
    prompts, demos, rankings = [], [], []
    clock = [0]

    def add(cat, user, source, ptype, text, answer, *, demo=False, rank=False):
        clock[0] += 1
        pid = f"s{len(prompts):05d}"
        if truth is not None:
            truth[pid] = cat
        prompts.append({"prompt_id": pid, "user_id": user, "source": source, "prompt_type": ptype, "text": text,
                        "created_at": (base + timedelta(minutes=37 * clock[0])).isoformat(), "lang": "en"})
        if demo:
            demos.append({"prompt_id": pid, "labeler_id": f"labeler_{rng.randint(1, 12):02d}", "completion": answer})
        if rank:
            k = rng.randint(4, 9)
            comps = _worse(answer, text, rng)[:k]
            ranks = list(range(k))
            if rng.random() < 0.3:  # a tie between two middle completions
                i = rng.randint(1, k - 2)
                ranks[i + 1] = ranks[i]
                ranks = [r if j <= i + 1 else r - 1 for j, r in enumerate(ranks)]
            order = list(range(k))
            rng.shuffle(order)
            rankings.append({"prompt_id": pid, "labeler_id": f"labeler_{rng.randint(1, 12):02d}",
                             "completions": [comps[o] for o in order], "ranks": [ranks[o] for o in order]})

    def variant(text: str) -> str:
        return rng.choice([text, text + " Please.", text.replace(".", "!", 1), "Please " + text[0].lower() + text[1:], text + " Thanks"])

    # Labeler-written prompts: plain, few-shot, user-based; all get demonstrations, many get rankings.
    for i, (c, p, a) in enumerate(tmpl):
        ptype = ["plain", "user_based"][i % 2]
        add(c, f"labeler_{i % 12 + 1:02d}", "labeler", ptype, p, a, demo=True, rank=i % 3 == 0)
    for i, prod in enumerate(FEWSHOT_PRODUCTS[:8]):
        add("Generation", f"labeler_{i % 12 + 1:02d}", "labeler", "few_shot", FEWSHOT_PREAMBLE + f"Product: {prod}\nDescription:",
            f"A dependable {prod.lower()} that makes everyday life a little easier.", demo=True, rank=True)
    for c, p, a in pii:
        add(c, "labeler_05", "labeler", "plain", p, a, demo=True, rank=True)
    # API prompts: Zipf-like users, near-duplicates, one heavy user above the 200 cap.
    users = [f"api_user_{i:03d}" for i in range(1, 121)]
    for n in range(900):
        user = users[min(int(rng.paretovariate(1.2)) - 1, len(users) - 1) if rng.random() < 0.5 else rng.randrange(len(users))]
        cat = rng.choices(cats, w)[0]
        # mostly fresh prompts; some repeat a labeler template, lightly edited (near-duplicate prefixes)
        c, p, a = rng.choice(by_cat[cat]) if rng.random() < 0.15 else (cat, *_api_prompt(cat, rng))
        add(c, user, "api", None, variant(p), a, demo=rng.random() < 0.08, rank=rng.random() < 0.45)
    for n in range(260):
        cat = rng.choices(cats, w)[0]
        p, a = _api_prompt(cat, rng)
        add(cat, "api_power_user", "api", None, f"Request {n}: {p}", a, rank=rng.random() < 0.2)
    # Few-shot templates reused by API users: long shared preamble, different product at the end.
    for n, prod in enumerate(FEWSHOT_PRODUCTS * 2):
        add("Generation", users[n % 15], "api", None, FEWSHOT_PREAMBLE + f"Product: {prod}\nDescription:", f"A dependable {prod.lower()}.", rank=n % 4 == 0)
    for c, p, a in pii:
        add(c, rng.choice(users), "api", None, p, a, rank=True)
    return {"prompts": prompts, "demonstrations": demos, "rankings": rankings}


def main() -> None:
    for name, rows in build().items():
        with open(HERE / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
