"""The paper's Table 1 use cases: names, definitions, tie-break rules and the shares of API prompts."""

from __future__ import annotations

CATEGORIES = ["Generation", "Open QA", "Brainstorming", "Chat", "Rewrite", "Summarization", "Classification",
              "Other", "Closed QA", "Extract"]

PAPER_SHARES = {"Generation": 0.456, "Open QA": 0.124, "Brainstorming": 0.112, "Chat": 0.084, "Rewrite": 0.066,
                "Summarization": 0.042, "Classification": 0.035, "Other": 0.035, "Closed QA": 0.026, "Extract": 0.019}

DEFINITIONS = {
    "Generation": "Produce new text or code from an instruction: a story, poem, email, essay, ad, function.",
    "Open QA": "A question answered from world knowledge, with no passage supplied.",
    "Brainstorming": "A list of ideas, options or suggestions.",
    "Chat": "A dialogue transcript to continue, or a role-play / persona conversation.",
    "Rewrite": "Change the form of GIVEN text: translate, paraphrase, fix grammar, change tone or format.",
    "Summarization": "Condense GIVEN text.",
    "Classification": "Assign GIVEN items to a label or category (sentiment, topic, language, spam).",
    "Other": "Unclear fragments and anything that fits no category.",
    "Closed QA": "A question to answer from a GIVEN passage or a given set of answer options.",
    "Extract": "Pull items (names, dates, keywords, fields) out of GIVEN text.",
}

TIE_BREAKS = [
    "A question about a GIVEN passage is Closed QA; pulling items out of it is Extract; condensing it is "
    "Summarization; changing its form is Rewrite.",
    "A list of ideas is Brainstorming, even when phrased as a question.",
    "A dialogue transcript or a role-play is Chat.",
    "A bare question with no passage is Open QA.",
    "Unclear fragments are Other.",
]
