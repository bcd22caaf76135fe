"""The canonical schema's closed vocabularies, apart from its polars types so that settings can be checked before
any heavy import (`builders.schema` re-exports them)."""

SOURCES = ("labeler", "api")
PROMPT_TYPES = ("plain", "few_shot", "user_based")
ROLES = ("system", "user", "assistant")
KINDS = ("prompt", "demonstration", "ranking")
