#!/usr/bin/env python3
"""Prints one book of the World English Bible (public domain), one verse per line.

  bench/world_english_bible.py BOOK     (BOOK: a USFM book id, e.g. TOB for Tobit)

The text comes from Debian's bibledit-data (`apt install bibledit-data`), which ships
the WEB, deuterocanonical books included, in USFM inside an SQLite file. Footnotes,
cross references and markup are dropped; verse numbers are not printed.
"""
import re
import sqlite3
import sys

DATABASE = "/usr/share/bibledit/databases/sample.sqlite"


def chapters(book_id):
    """The book's chapters' USFM, in order (rows are ./bibles/Sample/BOOK/CHAPTER/REV)."""
    by_number = {}
    for path, usfm in sqlite3.connect(DATABASE).execute("select file, data from sample"):
        parts = path.split("/")
        if len(parts) >= 6 and parts[3].isdigit() and parts[4].isdigit():
            by_number.setdefault(int(parts[3]), {})[int(parts[4])] = usfm
    for book in by_number.values():
        header = book.get(0, "")
        if re.match(rf"\\id {re.escape(book_id)}\b", header):
            return [book[c] for c in sorted(book) if c > 0]
    sys.exit(f"no book {book_id} in {DATABASE}")


def verses(usfm):
    usfm = re.sub(r"\\(f|x) .*?\\\1\*", "", usfm, flags=re.S)  # footnotes, cross references
    for verse in re.split(r"\\v \d+\S* ", usfm)[1:]:
        text = re.sub(r"\\[a-z]+\d*\*? ?", " ", verse)  # paragraph, poetry, character marks
        yield re.sub(r"\s+", " ", text).strip()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for chapter in chapters(sys.argv[1]):
        for verse in verses(chapter):
            print(verse)
