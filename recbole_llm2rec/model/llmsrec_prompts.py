"""LLM-SRec's prompts (the reference code's exact strings): a user prompt listing the history,
each item as its title and date followed by a `[HistoryEmb]` slot, ending in `[UserOut]`; an item
prompt ending in `[ItemOut]`."""
import time

HISTORY_EMB, USER_OUT, ITEM_OUT = "[HistoryEmb]", "[UserOut]", "[ItemOut]"
MARKERS = (HISTORY_EMB, USER_OUT, ITEM_OUT)
USER_PROMPT = ("This user has made a series of purchases in the following order: {history}. "
               "Based on this sequence of purchases, generate user representation token:"
               + USER_OUT)
HISTORY_ENTRY = 'Item No.{k}, Time: {date}, "{title}"' + HISTORY_EMB
ITEM_PROMPT = ('The item title and item embedding are as follows: "{title}"' + HISTORY_EMB
               + ", then generate item representation token:" + ITEM_OUT)


def user_prompt(titles, dates):
    """The user prompt for a history given oldest first (titles and YYYY-MM-DD dates)."""
    history = ", ".join(HISTORY_ENTRY.format(k=k, date=d, title=t)
                        for k, (t, d) in enumerate(zip(titles, dates), start=1))
    return USER_PROMPT.format(history=history)


def item_prompt(title):
    """The item prompt for one title."""
    return ITEM_PROMPT.format(title=title)


def utc_date(seconds):
    """YYYY-MM-DD (UTC) of a UNIX time in seconds."""
    return time.strftime("%Y-%m-%d", time.gmtime(float(seconds)))


def without_markers(title):
    """`title` with every marker string removed (a title must not open a slot of its own)."""
    for marker in MARKERS:
        title = title.replace(marker, "")
    return title
