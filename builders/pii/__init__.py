"""Personal data in free text: identifiers (cards, phones, addresses, ...) and names, found recall first."""
