"""Vision inspection: decoding camera frames and grading the symbols found."""
