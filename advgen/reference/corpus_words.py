"""The reference corpus' word lists and its two English helpers (indefinite article, "a" -> "an").

Data, not generation: the generator (`advgen.reference.corpus`) and the planted model's training
skeletons (`advgen.reference.planted_data`) draw from the same phrases, so they live apart from either.
The lists are the project's own, written before anything about attacks was measured.
"""

from __future__ import annotations

import re

OPENERS = (
    "", "", "", "", "Yesterday, ", "Later, ", "On Monday, ", "On Sunday, ", "In the morning, ",
    "That evening, ", "Last week, ", "Earlier, ", "One day, ", "At noon, ", "Last summer, ",
    "This morning, ", "Before dinner, ", "On Friday, ", "Early on, ", "In the end, ", "Then, ",
    "Afterwards, ", "After the lunch, ", "After school, ", "Then ",
)

# Joint activities of two people (past tense, plural subject "X and Y ...").
JOINT_ACTS = (
    "went to the {P}", "walked to the {P}", "arrived at the {P}", "visited the {P}",
    "met at the {P}", "left the {P}", "were sitting in the {P}", "came back from the {P}",
    "were waiting at the {P}", "reached the {P}", "were cleaning the {P}", "drove to the {P}",
    "were at the {P}", "spent the day at the {P}", "stopped by the {P}", "ran to the {P}",
    "were looking around the {P}", "had lunch at the {P}", "were talking at the {P}",
    "found a {O} at the {P}", "bought a {O} at the {P}", "saw a {O} at the {P}",
    "got a {O} at the {P}", "were playing at the {P}", "were working at the {P}",
    "were studying at the {P}", "had a lot of fun at the {P}", "moved to a new {P}",
    "finished their work", "sat down together", "had a long talk", "had an argument",
    "were making dinner", "were out for a walk", "played a game", "were very busy",
    "got home", "woke up early", "were bored", "went shopping", "took the bus to the {P}",
    "looked for a {O}", "cleaned up the {P}", "opened the {P}", "were leaving the {P}",
    "were commuting to the {P}", "were thinking about going to the {P}", "had a long argument",
    "were friends", "had a long day", "were going to the {P}",
)

# Subordinators for "<SUB> X and Y <act>, <main>".
SUBORDINATORS = ("When", "After", "While", "Once", "As soon as", "Because", "Since", "Before",
                 "Just after", "As")

GIVE_VERBS = ("gave", "handed", "passed", "sent", "showed", "threw", "offered", "brought",
              "lent", "sold", "mailed", "tossed", "returned", "gifted", "slid", "carried")
GIVE_INF = ("give", "hand", "pass", "send", "show", "throw", "offer", "bring", "lend", "sell",
            "mail", "toss", "return")
MODAL_PREFIX = ("decided to", "wanted to", "tried to", "was happy to", "agreed to", "had to",
                "chose to", "promised to", "forgot to", "offered to", "went on to", "was going to")
SAY_VERBS = ("said to", "talked to", "spoke to", "whispered to", "shouted to", "waved to",
             "smiled at", "said goodbye to", "said hello to", "wrote to", "called out to",
             "listened to", "nodded to", "explained it to", "complained to", "apologized to",
             "looked at", "laughed at", "turned to", "pointed at", "wrote a letter to",
             "sent a message to", "made a promise to", "told a story to", "sang a song to")

# Single-person state / event predicates ("X <pred>."). Used everywhere a person can appear.
STATES = (
    "had a good day", "had a bad day", "was tired", "was happy", "was sad", "was hungry",
    "was late", "was early", "was very busy", "felt sick", "felt great", "was bored",
    "was excited", "was nervous", "was enjoying the day", "was enjoying the situation",
    "enjoyed being with a friend", "laughed", "smiled", "sighed", "yawned", "sat down",
    "stood up", "went home", "was cold", "was thirsty", "liked the weather", "was reading",
    "was on the phone", "fell asleep", "woke up", "wanted to rest", "was in a hurry",
    "loved music", "was quiet", "was talking a lot", "looked around", "needed a break",
    "was a good cook", "worked hard", "was new in town", "had a cold", "was feeling fine",
    "had a lot of work", "lived nearby", "was a teacher", "was a nurse", "was a student",
    "liked to sing", "was very kind", "was a little shy", "was glad to be there",
)
SOLO_ACTS = (
    "went to the {P}", "walked to the {P}", "bought a {O}", "found a {O}", "lost a {O}",
    "cleaned the {P}", "left the {P}", "was at the {P}", "wanted a {O}", "made a {O}",
    "looked for a {O}", "dropped a {O}", "took a {O} from the {P}", "fixed the {O}",
    "waited at the {P}", "stayed at the {P}", "got a new {O}", "painted the {O}",
)
PAIR_ACTS = (  # "X <act> Y"
    "met", "called", "visited", "helped", "saw", "hugged", "thanked", "waited for", "invited",
    "followed", "found", "looked for", "talked with", "played with", "walked with", "sat with",
    "argued with", "laughed with", "ate with", "worked with",
)
PLURAL_STATES = ("were tired", "were happy", "laughed a lot", "had fun", "were hungry",
                 "were late", "went home", "were quiet", "talked for hours", "had a good time")

ENDINGS = (".", ".", ".", ".", " today.", " later.", " right away.", " with a smile.",
           " again.", " at last.", " as a gift.", " for the weekend.", " after that.")
AFTER_IO = (
    "", "", "", " {IO} was happy.", " {IO} said thank you.", " {IO} smiled.",
    " Then they went home.", " It was a nice day.", " {IO} put it away.", " They both laughed.",
    " {IO} did not expect that.", " {S} was glad.",
)

FILLER_NOUNS = ("cat", "dog", "teacher", "bird", "car", "child", "doctor", "tree", "door",
                "window", "table", "river", "city", "road", "train", "bus", "friend", "family",
                "baby", "man", "woman", "boy", "girl", "neighbor", "team", "class", "room")
FILLER_ADJ = ("big", "small", "old", "new", "quiet", "busy", "warm", "cold", "bright", "dark",
              "clean", "empty", "full", "nice", "long", "short", "red", "blue", "green", "happy")
FILLER_VERBS_INTR = ("slept", "ran", "waited", "stopped", "moved", "sang", "fell", "arrived",
                     "left", "opened", "closed", "shook", "grew", "barked", "rang", "played")
WEATHER = ("It was a sunny day.", "It was raining.", "The sky was grey.", "It was cold outside.",
           "The wind was strong.", "It was a warm evening.", "It snowed all night.",
           "The sun was setting.", "It was very hot.", "The morning was quiet.",
           "Friends like to talk.", "The lunch was good.", "Afterwards, everyone went home.",
           "The argument was long.", "Commuting to work takes time.", "They were thinking about it.")


def article(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


_ART = re.compile(r"\b([Aa]) ([aeiouAEIOU])")


def fix_articles(s: str) -> str:
    return _ART.sub(lambda m: m.group(1) + "n " + m.group(2), s)
