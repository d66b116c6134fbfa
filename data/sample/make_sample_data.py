#!/usr/bin/env python3
"""Generate the bundled sample data under data/sample/.

Everything here is written by the team: English sentences built from
hand-written templates and hand-written word lists. No text is taken from any
public data set. Only the *file formats* mimic the real data sets so that the
project's readers can parse the samples and the real files the same way:

  topic/news.csv, topic/classes.txt   AG News      (4-class topic)
  sentiment/train.tsv, dev.tsv        GLUE SST-2   (binary sentiment)
  ner/train.txt, dev.txt, test.txt    CoNLL-2003   (BIO NER)
  corpus.csv                          id,text corpus to embed

Usage (Python 3.11, standard library only):

    python data/sample/make_sample_data.py            # writes next to this file
    python data/sample/make_sample_data.py --out DIR  # writes somewhere else

The output is deterministic: every generator uses its own random.Random
seeded from SEED, so running the script twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import re
from pathlib import Path

SEED = 20240611

# ---------------------------------------------------------------------------
# Shared word lists (hand-written)
# ---------------------------------------------------------------------------

FIRST_NAMES = [
    "Amelia", "Daniel", "Priya", "Tomasz", "Chen", "Fatima", "Lucas", "Ingrid",
    "Mateo", "Aisha", "Oliver", "Hana", "Rafael", "Sofia", "Kwame", "Elena",
    "Marcus", "Yuki", "Nadia", "Henrik", "Grace", "Samuel", "Leila", "Viktor",
    "Camille", "Diego", "Anika", "Jonas", "Mariana", "Tariq", "Helen", "Pavel",
    "Rosa", "Emeka", "Clara", "Arjun", "Beatrice", "Felix", "Ines", "Kofi",
    "Laura", "Mikhail", "Noor", "Patrick", "Renata", "Stefan", "Thandiwe",
    "Ulrich", "Valeria", "Wei", "Yusuf", "Zofia", "Adrian", "Bianca", "Connor",
    "Dalia", "Emil", "Freya", "Gustavo", "Ruth",
]

LAST_NAMES = [
    "Okafor", "Lindqvist", "Moreau", "Haddad", "Novak", "Castellanos",
    "Whitfield", "Tanaka", "Brennan", "Kowalski", "Mensah", "Varga",
    "Delacroix", "Ibrahim", "Sorensen", "Petrov", "Albrecht", "Nakamura",
    "Fitzgerald", "Oyelaran", "Rossi", "Jansen", "Kaur", "Mwangi", "Dubois",
    "Eriksen", "Gallagher", "Horvath", "Iyer", "Jimenez", "Keller", "Lambert",
    "Marchetti", "Nilsson", "Osei", "Pereira", "Quintero", "Rahman", "Schultz",
    "Teixeira", "Ueda", "Vasquez", "Wojcik", "Yilmaz", "Zhang", "Abernathy",
    "Bakker", "Chowdhury", "Demir", "Estrada", "Hollis", "Achterberg",
    "Mbeki", "Fontaine", "Sandoval", "Laszlo", "Drummond", "Kimura",
]

# (city, country) pairs; stories that mention both use a matching pair.
GEO = [
    ("Nairobi", "Kenya"), ("Mombasa", "Kenya"), ("Lima", "Peru"), ("Oslo", "Norway"),
    ("Bergen", "Norway"), ("Hanoi", "Vietnam"), ("Cairo", "Egypt"),
    ("Alexandria", "Egypt"), ("Warsaw", "Poland"), ("Krakow", "Poland"),
    ("Lagos", "Nigeria"), ("Abuja", "Nigeria"), ("Santiago", "Chile"),
    ("Ankara", "Turkey"), ("Izmir", "Turkey"), ("Dhaka", "Bangladesh"),
    ("Lisbon", "Portugal"), ("Porto", "Portugal"), ("Bogota", "Colombia"),
    ("Medellin", "Colombia"), ("Accra", "Ghana"), ("Helsinki", "Finland"),
    ("Jakarta", "Indonesia"), ("Quito", "Ecuador"), ("Tunis", "Tunisia"),
    ("Vienna", "Austria"), ("Toronto", "Canada"), ("Montreal", "Canada"),
    ("Casablanca", "Morocco"), ("Kampala", "Uganda"), ("Buenos Aires", "Argentina"),
    ("Budapest", "Hungary"), ("Kuala Lumpur", "Malaysia"), ("Dakar", "Senegal"),
    ("Athens", "Greece"), ("Dublin", "Ireland"), ("Cork", "Ireland"),
    ("Mexico City", "Mexico"), ("Bangkok", "Thailand"), ("Kyiv", "Ukraine"),
    ("Rio de Janeiro", "Brazil"), ("Sao Paulo", "Brazil"), ("Osaka", "Japan"),
    ("Tokyo", "Japan"), ("Stockholm", "Sweden"), ("Melbourne", "Australia"),
    ("Perth", "Australia"), ("Mumbai", "India"), ("Chennai", "India"),
    ("Berlin", "Germany"), ("Hamburg", "Germany"), ("Lyon", "France"),
    ("Marseille", "France"), ("Milan", "Italy"), ("Naples", "Italy"),
    ("Madrid", "Spain"), ("Valencia", "Spain"), ("Karachi", "Pakistan"),
    ("Auckland", "New Zealand"), ("Cape Town", "South Africa"),
    ("Durban", "South Africa"), ("Colombo", "Sri Lanka"), ("San Jose", "Costa Rica"),
    ("Seoul", "South Korea"), ("Prague", "Czechia"),
    ("Reykjavik", "Iceland"), ("Geneva", "Switzerland"), ("Brussels", "Belgium"),
    ("Riga", "Latvia"), ("Zagreb", "Croatia"), ("Busan", "South Korea"),
    ("Hong Kong", "China"), ("Montevideo", "Uruguay"), ("Tallinn", "Estonia"),
]
CITIES = list(dict.fromkeys(c for c, _ in GEO))
COUNTRIES = list(dict.fromkeys(k for _, k in GEO))

# Fictional companies. Tech-flavoured ones are kept apart so that Business
# items can mention them (shared vocabulary with Sci/Tech).
COMPANIES = [
    "Halvorsen Freight", "Bluepeak Energy", "Meridian Bank", "Silverline Airways",
    "Granite Foods", "Orchid Pharmaceuticals", "Pinecrest Motors",
    "Aurora Steel", "Vantage Insurance", "Redwater Mining", "Solstice Media",
    "Ironbridge Capital", "Calder Logistics", "Brightleaf Organics",
    "Castellan Telecom", "Westmoor Breweries", "Oakhaven Hotels",
    "Sable Textiles", "Tidewater Shipping", "Everstone Construction",
    "Fernhill Publishing", "Juniper Health", "Marlowe Foods",
    "Riverside Dairy", "Summit Outdoor", "Wexford Chemicals", "Zephyr Airlines",
    "Harbor and Finch", "Kingfisher Retail", "Copperfield Bank",
]

TECH_COMPANIES = [
    "Northwind Systems", "Corvid Analytics", "Tessaract Labs",
    "Lumen Semiconductor", "Kestrel Mobile", "Quillon Software",
    "Nimbus Cloud", "Polaris Robotics", "Cobalt Batteries", "Lodestar Games",
    "Novalis Biotech", "Orbitron Space", "Prism Optics", "Tangent Devices",
    "Umbra Security", "Verdant Power", "Helix Computing", "Skylark Networks",
]

CLUBS = [
    "Riverton Rovers", "Eastport United", "Harlow Athletic", "Kingsbridge City",
    "Port Alden Mariners", "Ashford Town", "Blackmoor Wanderers",
    "Greyhaven FC", "Millbrook Rangers", "Northgate Albion", "Stonebridge Celtic",
    "Westfield Harriers", "Redcliff Falcons", "Lakeside Comets",
    "Oldcastle Rovers", "Southmere Athletic",
]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December"]
ORDINALS = ["second", "third", "fourth", "fifth", "sixth", "seventh"]
AGENCIES = ["NewsLine", "Wirefeed", "GlobePost", "Ledger Wire", "Daybreak News"]

# ---------------------------------------------------------------------------
# Generic template filling
# ---------------------------------------------------------------------------

SLOT_RE = re.compile(r"\{([A-Z_]+?)(\d?)\}")
GEO_SLOTS = ("CITY", "COUNTRY", "CITYUP")


def fill(template: str, rng: random.Random, slots: dict, values: dict | None = None) -> str:
    """Replace {SLOT} / {SLOT2} markers.

    The same marker gets the same value everywhere it is used with the same
    `values` dict (so a title and its description talk about the same
    people and places); {X2}, {X3} get values distinct from {X}. {CITY} and
    {COUNTRY} with the same suffix are drawn as a matching pair.
    """
    if values is None:
        values = {}

    def pick(base: str, suffix: str) -> str:
        key = base + suffix
        if key in values:
            return values[key]
        if base in GEO_SLOTS:
            taken = {v for k, v in values.items() if k.startswith("COUNTRY")}
            city, country = rng.choice(GEO)
            for _ in range(50):
                if country not in taken:
                    break
                city, country = rng.choice(GEO)
            values["CITY" + suffix] = city
            values["COUNTRY" + suffix] = country
            values["CITYUP" + suffix] = city.upper()
            return values[key]
        src = slots[base]
        taken = {v for k, v in values.items() if k.rstrip("0123456789") == base}
        value = ""
        for _ in range(30):
            value = src(rng) if callable(src) else rng.choice(src)
            if value not in taken:
                break
        values[key] = value
        return value

    return fix_articles(SLOT_RE.sub(lambda m: pick(m.group(1), m.group(2)), template))


def fix_articles(text: str) -> str:
    """'a' -> 'an' before a vowel sound (after slot filling)."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])(?!use|uni|eu|one|Uni|Eu)", r"\1n ", text)


def _money(r: random.Random) -> str:
    if r.random() < 0.6:
        return f"${r.randint(12, 950)} million"
    return f"${r.randint(1, 9)}.{r.randint(1, 9)} billion"


TOPIC_SLOTS = {
    "FIRST": FIRST_NAMES,
    "LAST": LAST_NAMES,
    "COMPANY": COMPANIES,
    "TECHCO": TECH_COMPANIES,
    "CLUB": CLUBS,
    "DAY": DAYS,
    "MONTH": MONTHS,
    "ORD": ORDINALS,
    "AGENCY": AGENCIES,
    "NUM": lambda r: str(r.randint(2, 48)),
    "SMALLNUM": lambda r: str(r.randint(2, 9)),
    "AGE": lambda r: str(r.randint(19, 31)),
    "OLDAGE": lambda r: str(r.randint(34, 40)),
    "YEAR": lambda r: str(r.randint(2026, 2034)),
    "PCT": lambda r: r.choice([str(r.randint(2, 35)), f"{r.randint(0, 9)}.{r.randint(1, 9)}"]),
    "VOTEPCT": lambda r: str(r.randint(51, 68)),
    "RATE": lambda r: r.choice(["3.25", "3.5", "4", "4.25", "4.75", "5", "5.5", "6.25"]),
    "MONEY": _money,
    "WINSCORE": ["2-1", "3-2", "3-1", "2-0", "4-2", "1-0"],
    "DRAWSCORE": ["1-1", "2-2", "3-3"],
    "TSCORE": ["6-4 3-6 7-5", "7-6 6-3", "6-2 6-4", "4-6 6-3 6-1", "6-3 7-5"],
    "RUNS": lambda r: str(r.randint(104, 212)),
    "TIME": lambda r: f"2:0{r.randint(4, 9)}:{r.randint(10, 59)}",
    "SECS": lambda r: f"0.{r.randint(11, 89)}",
    "VER": lambda r: f"{r.randint(2, 9)}.{r.randint(0, 12)}",
    "TIMEAGO": ["last year", "two years ago", "in 2029", "18 months ago", "last spring"],
    "DIS": ["powerful earthquake", "severe storm", "flash flood", "landslide",
            "tropical cyclone"],
    "REGION": ["northern", "southern", "eastern", "western", "central"],
    "ISSUE": ["migration", "water sharing", "border security", "climate finance",
              "refugee returns", "fishing rights", "nuclear safety"],
    "LAW": ["media", "land reform", "citizenship", "security", "election", "language"],
    "LAW_EFFECT": ["restrict press freedom", "weaken the courts", "give police wider powers",
                   "make it harder for small parties to stand"],
    "POLQUOTE": ["largely free but not fair", "calm and orderly", "a test for democracy",
                 "marred by irregularities"],
    "ORGI": ["United Nations", "African Union", "European Union", "Red Cross",
             "World Health Organization", "World Food Programme"],
    "SECTOR": ["banking", "mining", "energy", "retail", "airline", "steel", "telecoms",
               "shipping", "insurance"],
    "MARKET": ["Asia", "Europe", "North America", "Latin America", "Africa",
               "the Middle East"],
    "DEVICE": ["smartphone", "tablet", "laptop", "smartwatch", "graphics chip",
               "home router", "fitness tracker", "e-reader", "games console"],
    "SOFTWARE": ["web browser", "email client", "office suite", "video player",
                 "database server", "photo editor", "operating system"],
    "TECHTHING": ["battery cell", "solar panel", "memory chip", "water filter",
                  "optical sensor", "quantum processor", "wind turbine blade"],
    "APPLICATION": ["electric cars", "home solar power", "medical scans",
                    "mobile phones", "data centres", "clean drinking water"],
    "ANIMAL": ["tree frog", "orchid", "gecko", "freshwater crab", "bat", "beetle",
               "songbird", "catfish"],
    "ASTRO": ["galaxy", "supernova", "black hole", "star cluster", "comet",
              "planet-forming disc"],
    "PLANETARY": ["Jupiter's moon Europa", "the planet Mercury", "a distant asteroid",
                  "the rings of Saturn", "the far side of the Moon"],
    "MISSION": ["Meridian", "Halcyon", "Starling", "Boreas", "Calypso", "Vega"],
    "HABIT": ["regular walking", "reading before bed", "eating earlier in the evening",
              "limiting screen time", "gardening"],
    "ROBOT": ["fold laundry", "sort recycling", "stack dishes", "pick ripe fruit",
              "open doors", "tie knots"],
    "FEATURE": ["right-to-left languages", "encrypted backups", "dark mode",
                "faster start-up times", "older hardware"],
}


# ---------------------------------------------------------------------------
# 1. Topic classification (AG News format)
# ---------------------------------------------------------------------------

TOPIC_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]

# Each story: (title variants, lead variants, follow-up sentences). Every
# title fits every lead of its story; slots are shared across the item.
# "hard" stories borrow vocabulary from another class.
TOPIC_STORIES = {
    1: {  # World
        "stories": [
            (["{COUNTRY} and {COUNTRY2} agree to reopen border crossings",
              "{COUNTRY}, {COUNTRY2} settle border dispute"],
             ["Foreign ministers from {COUNTRY} and {COUNTRY2} agreed in {CITY} on {DAY} to reopen border crossings that have been closed since {TIMEAGO}.",
              "{COUNTRY} and {COUNTRY2} signed a deal on {DAY} ending a long dispute over their shared border, officials in {CITY} said."],
             ["Traders on both sides welcomed the move.",
              "Diplomats said further talks on {ISSUE} were expected next month.",
              "\"This is a good day for both our peoples,\" the foreign minister of {COUNTRY} told reporters."]),
            (["Thousands march in {CITY} over fuel prices",
              "Fuel price protests grip {CITY}"],
             ["Tens of thousands of protesters filled the streets of {CITY} for a {ORD} day on {DAY}, demanding the resignation of the government over rising fuel prices.",
              "Police in {CITY} used tear gas to break up a crowd of several thousand people protesting against fuel price rises, witnesses said."],
             ["Schools and markets in the capital remained closed on {DAY}.",
              "Opposition leaders urged supporters to keep up the pressure.",
              "Human rights groups called for an independent investigation into the police response.",
              "The government says the price rises are needed to reduce a growing budget deficit."]),
            (["{COUNTRY} president wins second term amid low turnout",
              "Opposition rejects {COUNTRY} election result"],
             ["President {FIRST} {LAST} of {COUNTRY} has won a second term with {VOTEPCT} percent of the vote, according to official results published on {DAY}.",
              "Voters in {COUNTRY} re-elected President {FIRST} {LAST} in an election that observers described as \"{POLQUOTE}\"."],
             ["Turnout was estimated at {PCT} percent, lower than in the previous vote.",
              "Opposition leaders rejected the result and said they would challenge it in court.",
              "International observers are due to publish their report next week.",
              "\"The people have spoken,\" {LAST} told cheering supporters in {CITY}."]),
            (["{NUM} dead after {DIS} in {REGION} {COUNTRY}",
              "Rescuers search for survivors of {DIS} near {CITY}"],
             ["Officials in {COUNTRY} said on {DAY} that {NUM} people had been killed and many more injured when a {DIS} struck the {REGION} part of the country.",
              "Rescue teams in {COUNTRY} worked through the night searching for survivors after a {DIS} destroyed hundreds of homes near {CITY}, leaving {NUM} people dead."],
             ["The government has declared three days of national mourning.",
              "Officials said the death toll was likely to rise as rescuers reached remote villages.",
              "Neighbouring countries have offered to send medical teams and emergency supplies.",
              "It was the worst disaster to hit the region in more than a decade."]),
            (["UN warns of food shortages in {COUNTRY}",
              "Aid agencies sound alarm over hunger in {COUNTRY}"],
             ["The {ORGI} warned on {DAY} that {NUM},000 people in {COUNTRY} face severe food shortages unless aid reaches them before the rainy season.",
              "A convoy of {NUM} trucks carrying food and medicine reached a besieged town near {CITY} on {DAY}, but the {ORGI} said far more help was needed across {COUNTRY}."],
             ["Aid workers said many families had been surviving on one meal a day.",
              "The {ORGI} said it was monitoring the situation closely.",
              "Donors meeting in {CITY2} pledged {MONEY} in emergency assistance."]),
            (["{COUNTRY} expels two {COUNTRY2} diplomats",
              "Diplomatic row deepens between {COUNTRY} and {COUNTRY2}"],
             ["{COUNTRY} has expelled two diplomats from {COUNTRY2}, accusing them of activities 'incompatible with their status', the foreign ministry said on {DAY}.",
              "{COUNTRY} ordered two diplomats from {COUNTRY2} to leave the country within 48 hours on {DAY} and recalled its own ambassador for consultations."],
             ["{COUNTRY2} called the decision \"regrettable\" and said it would respond.",
              "Relations between the two countries have been strained since {TIMEAGO}.",
              "Analysts said the dispute could delay a planned agreement on {ISSUE}."]),
            (["Police arrest {NUM} in {CITY} security sweep",
              "{CITY} raids target suspected militants"],
             ["Security forces in {CITY} arrested {NUM} people suspected of planning attacks on government buildings, police said on {DAY}.",
              "Police carried out dawn raids across {CITY} on {DAY}, detaining {NUM} people accused of belonging to an armed group."],
             ["A police spokesman said more arrests were possible.",
              "Security has been tightened around embassies and the main airport.",
              "Life in the city returned to normal by the evening."]),
            (["{COUNTRY} parliament passes disputed {LAW} bill",
              "Critics fear new {LAW} law in {COUNTRY}"],
             ["The {COUNTRY} parliament voted on {DAY} to approve a new {LAW} law that critics say will {LAW_EFFECT}.",
              "Lawmakers in {COUNTRY} passed a {LAW} bill after a heated overnight debate, despite protests outside parliament in {CITY}."],
             ["The bill must still be signed by the president.",
              "Human rights groups called the vote \"a dark day\" for the country.",
              "Supporters of the law say it will bring stability."]),
            (["Hostages freed in {COUNTRY} after {SMALLNUM}-day standoff",
              "Hostages released unharmed near {CITY}"],
             ["A group of {SMALLNUM} aid workers held hostage in {REGION} {COUNTRY} were released unharmed on {DAY} after talks led by local religious leaders.",
              "Gunmen who seized a hotel near {CITY} surrendered on {DAY}, freeing all of their hostages after a tense standoff with security forces."],
             ["The government thanked the mediators for their help.",
              "Officials did not say whether a ransom had been paid.",
              "The freed hostages were taken to hospital for checks."]),
            (["Prime Minister {LAST} survives confidence vote",
              "{COUNTRY} government narrowly survives vote"],
             ["The government of Prime Minister {FIRST} {LAST} survived a confidence vote in the {COUNTRY} parliament on {DAY} by just {SMALLNUM} votes."],
             ["The opposition had accused the government of mishandling the economy.",
              "{LAST} said the result showed the coalition was united.",
              "Analysts said early elections remained a possibility."]),
            (["{COUNTRY} declares state of emergency after unrest",
              "Emergency rule imposed in parts of {COUNTRY}"],
             ["The government of {COUNTRY} declared a state of emergency in {SMALLNUM} provinces on {DAY} after weeks of unrest over rising food prices."],
             ["A night-time curfew will be enforced in {CITY}.",
              "Opposition groups said the measure was an attempt to silence critics.",
              "The army has been deployed to guard government buildings."]),
            (["Court in {CITY} jails former minister",
              "Ex-minister {LAST} sentenced for corruption"],
             ["Former minister {FIRST} {LAST} was sentenced to {SMALLNUM} years in prison by a court in {CITY} on {DAY} after being found guilty of taking bribes."],
             ["{LAST} denied wrongdoing and said he would appeal.",
              "The case was seen as a test of the government's promise to fight corruption."]),
            (["Foreign ministers gather in {CITY} to discuss {ISSUE}",
              "Talks on {ISSUE} open in {CITY}"],
             ["Foreign ministers from more than {NUM} countries met in {CITY} on {DAY} to discuss {ISSUE}, but failed to agree on a joint statement.",
              "Leaders meeting in {CITY} agreed on {DAY} to set up a joint fund to help poorer countries cope with {ISSUE}."],
             ["The {ORGI} described the meeting as \"a useful first step\".",
              "The next round of talks will be held in {CITY2} in {MONTH}."]),
            (["{COUNTRY} to hold snap election in {MONTH}",
              "{LAST} calls early election in {COUNTRY}"],
             ["President {FIRST} {LAST} of {COUNTRY} announced on {DAY} that early elections would be held in {MONTH}, a year ahead of schedule."],
             ["The opposition welcomed the decision.",
              "The announcement followed months of political deadlock.",
              "{LAST} said the country needed \"a fresh mandate\"."]),
        ],
        "hard": [
            (["Sanctions on {COUNTRY} hit oil exports"],
             ["New sanctions imposed on {COUNTRY} have cut its oil exports by nearly half, the country's energy minister told parliament on {DAY}."],
             ["The government called the sanctions illegal.", "Fuel queues have formed in {CITY}."]),
            (["{COUNTRY} blocks social media apps ahead of vote"],
             ["Authorities in {COUNTRY} blocked access to several social media apps on {DAY}, saying the move was needed to prevent unrest before the election."],
             ["Rights groups said the ban was an attack on free speech."]),
            (["Trade talks between {COUNTRY} and {COUNTRY2} collapse"],
             ["Talks on a trade agreement between {COUNTRY} and {COUNTRY2} collapsed in {CITY} on {DAY}, with each side blaming the other for the failure."],
             ["Both governments said they remained open to further talks."]),
        ],
    },
    2: {  # Sports
        "stories": [
            (["{CLUB} edge {CLUB2} in late thriller",
              "{LAST} double sinks {CLUB2}",
              "{CLUB} come from behind to beat {CLUB2}"],
             ["{FIRST} {LAST} scored twice in the second half as {CLUB} came from behind to beat {CLUB2} {WINSCORE} on {DAY} night."],
             ["It was their {ORD} win in a row.",
              "A crowd of {NUM},000 watched the match despite heavy rain.",
              "\"We never stopped believing,\" the {CLUB} coach told reporters after the game.",
              "{CLUB2} finished the match with ten men after a late red card."]),
            (["{LAST} wins {CITY} Open title",
              "{LAST} beats top seed to win in {CITY}"],
             ["{FIRST} {LAST} of {COUNTRY2} won the {CITY} Open on {DAY}, beating the top seed {TSCORE} in a final that lasted nearly three hours."],
             ["It was {LAST}'s {ORD} title of the season.",
              "The top seed said an old injury had affected the final set.",
              "{LAST} will rise into the world's top ten next week."]),
            (["{CLUB} sack coach after winless run",
              "{CLUB} part company with coach {LAST}"],
             ["{CLUB} have parted company with coach {FIRST} {LAST} after a run of {SMALLNUM} games without a win left the club near the bottom of the league."],
             ["The club said the assistant coach would take charge on an interim basis.",
              "Fans had booed the team off the pitch after a home defeat on {DAY}.",
              "{LAST} had been in charge for less than two seasons."]),
            (["{LAST} breaks course record in {CITY} marathon",
              "{LAST} wins {CITY} marathon"],
             ["Defending champion {FIRST} {LAST} set a course record of {TIME} to win the {CITY} marathon for the {ORD} time on {DAY}.",
              "{FIRST} {LAST} pulled away in the final two kilometres to win the {CITY} marathon in {TIME}, despite hot and humid conditions."],
             ["More than {NUM},000 runners took part in the race.",
              "{LAST} said winning in {CITY} had been a goal since childhood."]),
            (["{LAST} century puts {COUNTRY} in control",
              "{COUNTRY} close in on victory over {COUNTRY2}"],
             ["{COUNTRY} captain {FIRST} {LAST} hit an unbeaten {RUNS} as his side took control of the second test against {COUNTRY2} in {CITY}."],
             ["{COUNTRY2} need another {RUNS2} runs to avoid an innings defeat.",
              "Rain is forecast for the final two days of the match.",
              "The series is level at one match each."]),
            (["Injury rules {LAST} out for the season",
              "Blow for {CLUB} as {LAST} suffers knee injury"],
             ["{CLUB} midfielder {FIRST} {LAST} will miss the rest of the season after tearing a knee ligament in training, the club said on {DAY}."],
             ["{LAST}, {AGE}, had played in every league game this season.",
              "The club said the player would have surgery next week.",
              "It is a major setback for {CLUB}, who are chasing a top-four finish."]),
            (["{CLUB} sign striker {LAST} on {SMALLNUM}-year deal",
              "{CLUB} agree fee for {CLUB2} forward {LAST}"],
             ["{CLUB} confirmed on {DAY} that they had agreed a fee with {CLUB2} for the {AGE}-year-old forward {FIRST} {LAST}, who will sign a {SMALLNUM}-year contract."],
             ["The fee was not disclosed but is believed to be a club record.",
              "{LAST} scored {NUM} goals for {CLUB2} last season."]),
            (["Late goal rescues draw for {CLUB}",
              "{CLUB} snatch a point at {CLUB2}"],
             ["A goal in stoppage time from substitute {FIRST} {LAST} earned {CLUB} a {DRAWSCORE} draw away at {CLUB2} on {DAY}."],
             ["{CLUB2} had led for most of the second half.",
              "\"We showed real character,\" the {CLUB} captain said."]),
            (["{LAST} takes 400 metres gold in {CITY}",
              "{LAST} storms to gold in {CITY}"],
             ["{FIRST} {LAST} of {COUNTRY2} finished {SECS} seconds ahead of the field to take gold in the 400 metres at the championships in {CITY} on {DAY}."],
             ["It was {LAST}'s first major title.",
              "The championships continue on {DAY2} with the relay finals."]),
            (["{COUNTRY} rugby side hit by injuries",
              "{COUNTRY} without three forwards for {CITY2} test"],
             ["The {COUNTRY} rugby team will travel to {CITY2} without three first-choice forwards, coach {FIRST} {LAST} said on {DAY}."],
             ["{LAST} said the squad had enough depth to cope.",
              "The match will be played in front of a sell-out crowd."]),
            (["{CLUB} stretch lead at the top",
              "{CLUB} beat {CLUB2} to go {SMALLNUM} points clear"],
             ["{CLUB} moved {SMALLNUM} points clear at the top of the league with a {WINSCORE} home win over {CLUB2} on {DAY}."],
             ["{CLUB2} have now lost three games in a row.",
              "The two sides meet again in the cup next month.",
              "{FIRST} {LAST} scored the winner with a header from a corner."]),
            (["{LAST} wins by {SMALLNUM} shots in {CITY}",
              "Final-round 66 seals title for {LAST}"],
             ["{FIRST} {LAST} carded a final-round 66 to win by {SMALLNUM} shots in {CITY} on {DAY}, a first title in more than two years."],
             ["{LAST} had started the day level with three other players.",
              "Strong winds made scoring difficult for much of the week."]),
            (["Veteran goalkeeper {LAST} to retire at {OLDAGE}",
              "{LAST} calls time on {CLUB} career"],
             ["{CLUB} goalkeeper {FIRST} {LAST} announced on {DAY} that he would retire at the end of the season, bringing to an end a career that lasted almost two decades."],
             ["{LAST} made more than 400 appearances for the club.",
              "He is expected to join the coaching staff."]),
            (["Doping ban for {COUNTRY} sprinter upheld",
              "Appeal rejected in {COUNTRY} doping case"],
             ["A sports court on {DAY} upheld a ban of {SMALLNUM} years on a sprinter from {COUNTRY} who tested positive for a banned substance last season."],
             ["The athlete has always denied taking anything deliberately.",
              "The ban rules the sprinter out of the next Olympic Games."]),
        ],
        "hard": [
            (["{CLUB} report record revenue as ticket sales soar"],
             ["{CLUB} said on {DAY} that revenue rose to a record {MONEY} last season, helped by sold-out matches and a new sponsorship deal."],
             ["The club plans to spend the money on new players and its youth academy."]),
            (["Stadium deal worth {MONEY} approved in {CITY}"],
             ["Councillors in {CITY} approved plans for a {MONEY} stadium that will become the new home of {CLUB} from next season."],
             ["Construction will begin in {MONTH}."]),
            (["Broadcaster pays {MONEY} for league rights"],
             ["A television company has agreed to pay {MONEY} for the rights to show league matches for the next three seasons, the league said on {DAY}."],
             ["Clubs will share the money equally."]),
            (["Sprinters try out new timing technology"],
             ["Athletes at a meeting in {CITY} on {DAY} tested a new timing system that uses cameras and sensors in the starting blocks to detect false starts."],
             ["Officials hope to use the system at next year's championships."]),
        ],
    },
    3: {  # Business
        "stories": [
            (["{COMPANY} profit jumps {PCT}% on strong demand",
              "{COMPANY} beats forecasts as sales rise"],
             ["{COMPANY} said on {DAY} that quarterly profit rose {PCT} percent to {MONEY}, helped by strong sales in {MARKET} and lower costs."],
             ["Analysts had expected a smaller increase.",
              "The company's shares have gained {PCT2} percent so far this year.",
              "The company said it remained confident about its outlook for next year."]),
            (["Shares in {COMPANY} slide after profit warning",
              "{COMPANY} warns on full-year earnings"],
             ["Shares in {COMPANY} fell as much as {PCT} percent in early trading on {DAY} after the company warned that full-year earnings would miss forecasts."],
             ["The company blamed weak demand in {MARKET}.",
              "It was the {ORD} profit warning in two years.",
              "\"We are disappointed with these results,\" the chief executive said."]),
            (["{COMPANY} agrees {MONEY} takeover of {COMPANY2}",
              "{COMPANY} to buy rival {COMPANY2}"],
             ["{COMPANY} has agreed to buy rival {COMPANY2} for about {MONEY} in cash and shares, creating one of the largest groups of its kind in {MARKET}."],
             ["The deal still needs approval from regulators and shareholders.",
              "Shares in {COMPANY2} rose {PCT} percent on the news.",
              "The combined company will employ about {NUM},000 people."]),
            (["Central bank in {COUNTRY} raises rates",
              "{COUNTRY} lifts interest rates to {RATE}%"],
             ["The central bank of {COUNTRY} raised its benchmark interest rate by a quarter point to {RATE} percent on {DAY}, citing persistent inflation and a tight labour market."],
             ["Economists said further rate rises were likely before the end of the year.",
              "The currency strengthened after the announcement."]),
            (["Oil prices climb to {NUM}-week high",
              "Oil rises on supply worries"],
             ["Oil prices rose for a {ORD} straight session on {DAY} as traders worried about supply disruptions and falling inventories."],
             ["Higher fuel costs are expected to push up airline fares.",
              "Analysts said prices could fall back if demand weakens."]),
            (["{COMPANY} to cut {SMALLNUM},000 jobs",
              "{COMPANY} announces restructuring"],
             ["{COMPANY} plans to cut about {SMALLNUM},000 jobs over the next two years as part of a restructuring aimed at saving {MONEY} a year."],
             ["Unions said they would fight the job cuts.",
              "Most of the cuts will fall on office staff in {CITY}.",
              "Shares in the company rose {PCT} percent on the news."]),
            (["{COUNTRY} inflation eases for {ORD} month",
              "Inflation in {COUNTRY} slows to {PCT}%"],
             ["Consumer prices in {COUNTRY} rose {PCT} percent in {MONTH} from a year earlier, the statistics office said on {DAY}, slightly below economists' expectations."],
             ["Food and energy prices fell for the first time in months.",
              "The figures make an interest rate cut more likely."]),
            (["{COMPANY} chief executive steps down",
              "{COMPANY} boss {LAST} to step down"],
             ["{FIRST} {LAST}, chief executive of {COMPANY}, will step down at the end of the year after {NUM} years in the role, the company said on {DAY}."],
             ["The board said a successor would be named within weeks.",
              "Shares in {COMPANY} were little changed on the news."]),
            (["{COMPANY} opens new plant near {CITY}",
              "{COMPANY} invests {MONEY} in {COUNTRY}"],
             ["{COMPANY} will invest {MONEY} in a new factory near {CITY} that is expected to create several hundred jobs."],
             ["Construction is due to begin next year.",
              "Local officials welcomed the investment."]),
            (["Regulators fine {COMPANY} over hidden fees",
              "{COMPANY} fined {MONEY}"],
             ["Regulators in {COUNTRY} fined {COMPANY} {MONEY} on {DAY} for misleading customers about hidden fees and charges."],
             ["The company said it would not appeal.",
              "Customers who were affected will receive refunds."]),
            (["Stocks close higher as {SECTOR} shares rally",
              "Markets rise on hopes rates have peaked"],
             ["Stocks ended higher on {DAY}, led by {SECTOR} shares, as investors bet that borrowing costs have peaked."],
             ["The benchmark index closed {PCT} percent higher.",
              "Trading volumes were lighter than usual."]),
            (["{COMPANY} posts surprise quarterly loss",
              "Rising costs push {COMPANY} into the red"],
             ["{COMPANY} reported an unexpected loss for the quarter as higher fuel and wage costs outweighed a rise in sales."],
             ["Revenue for the period came in at {MONEY}.",
              "\"Demand has held up better than we feared, but costs remain a challenge,\" the finance chief said."]),
            (["Dollar slips as investors await jobs data"],
             ["The dollar fell against most major currencies on {DAY} as investors waited for figures on jobs and wages due later in the week."],
             ["Gold prices edged higher.", "Bond yields were little changed."]),
            (["Retail sales rise more than expected in {MONTH}",
              "Shoppers lift {COUNTRY} retail sales"],
             ["Retail sales in {COUNTRY} rose {PCT} percent in {MONTH}, more than economists had forecast, as shoppers spent more on clothing and household goods."],
             ["Online sales grew at their fastest pace in a year."]),
        ],
        "hard": [
            (["{TECHCO} shares fall after chip shortage hits sales"],
             ["Shares in {TECHCO} dropped {PCT} percent on {DAY} after the company said a shortage of chips would hold back sales of its new {DEVICE}."],
             ["The company cut its revenue forecast for the year."]),
            (["{TECHCO} buys software start-up for {MONEY}"],
             ["{TECHCO} has agreed to buy a small software start-up for {MONEY}, its {ORD} acquisition this year, as it tries to grow its subscription business."],
             ["The deal is expected to close in {MONTH}."]),
            (["Sports retailer {COMPANY} lifts profit outlook"],
             ["{COMPANY} raised its profit forecast on {DAY} after strong sales of football shirts and running shoes during the summer."],
             ["Its shares rose {PCT} percent."]),
            (["Investors cheer {TECHCO} results"],
             ["Shares in {TECHCO} jumped {PCT} percent on {DAY} after the company reported higher than expected sales of its {DEVICE} and cloud services."],
             ["Profit for the quarter rose to {MONEY}."]),
        ],
    },
    4: {  # Sci/Tech
        "stories": [
            (["{TECHCO} unveils new {DEVICE}",
              "{TECHCO} shows off faster {DEVICE}"],
             ["{TECHCO} on {DAY} unveiled a new {DEVICE} that it says is {PCT} percent faster than the previous model and uses less power."],
             ["The company did not say how much the device would cost.",
              "It will go on sale in {MONTH}.",
              "Reviewers who tried the device said the battery life was impressive."]),
            (["Researchers build cheaper {TECHTHING}",
              "New {TECHTHING} could cut cost of {APPLICATION}"],
             ["Researchers at the University of {CITY} say they have developed a {TECHTHING} that could make {APPLICATION} cheaper and more reliable."],
             ["The findings were published in a leading scientific journal.",
              "The team hopes to test a working prototype within two years."]),
            (["Scientists find new species of {ANIMAL} in {COUNTRY}",
              "New {ANIMAL} species discovered in {COUNTRY}"],
             ["A team of biologists working in the forests of {COUNTRY} has identified a previously unknown species of {ANIMAL}, according to a paper published this week."],
             ["The researchers said the area should be protected from logging.",
              "Only a handful of specimens have been found so far."]),
            (["Security flaw found in popular {SOFTWARE}",
              "Users urged to update {SOFTWARE}"],
             ["Security researchers have found a flaw in a widely used {SOFTWARE} that could let attackers take control of a computer simply by sending it a crafted file."],
             ["Users are advised to install the update as soon as possible.",
              "There is no evidence the flaw has been used in attacks so far."]),
            (["{MISSION} probe sends back images of {PLANETARY}",
              "First close-up pictures from {MISSION} mission"],
             ["The {MISSION} probe, launched {TIMEAGO}, has sent back its first close-up images of {PLANETARY}, mission scientists said on {DAY}."],
             ["The mission is scheduled to last until {YEAR}.",
              "Scientists hope the images will reveal signs of water ice."]),
            (["Space agency delays launch of {MISSION} probe",
              "{MISSION} launch pushed back to {MONTH}"],
             ["The launch of the {MISSION} probe has been postponed until {MONTH} after engineers found a fault in one of its fuel valves, the space agency said on {DAY}."],
             ["The agency said the spacecraft itself was not damaged."]),
            (["Astronomers spot distant {ASTRO}"],
             ["Astronomers using a telescope in {COUNTRY} have spotted a {ASTRO} about {NUM} million light years from Earth."],
             ["The object is one of the most distant of its kind ever observed.",
              "Further observations are planned for later this year."]),
            (["Study links {HABIT} to better sleep"],
             ["A new study of {NUM},000 adults suggests that {HABIT} may be linked to better sleep, though the authors caution that more research is needed."],
             ["\"It's an association, not proof,\" one of the authors said."]),
            (["{TECHCO} releases update to fix battery bug"],
             ["{TECHCO} has released a software update for its {DEVICE} after users complained that the battery drained within hours."],
             ["The company apologised for the problem.",
              "The update can be downloaded free of charge."]),
            (["Robot learns to {ROBOT} by watching people"],
             ["Engineers at {TECHCO} have built a robot that can {ROBOT} after watching only a handful of demonstrations."],
             ["\"This changes what we thought was possible,\" one of the engineers said.",
              "The company hopes to sell the system to warehouses."]),
            (["Open-source {SOFTWARE} reaches version {VER}"],
             ["The open-source {SOFTWARE} project released version {VER} on {DAY}, adding support for {FEATURE}."],
             ["The software can be downloaded free of charge.",
              "More than {NUM}0 volunteers contributed to the release."]),
            (["Hackers target {SECTOR} firms with new virus"],
             ["A group of hackers has been sending infected email attachments to staff at {SECTOR} companies, security firm {TECHCO} warned on {DAY}."],
             ["Similar attacks have been reported in several countries.",
              "The virus can copy passwords and files stored on a computer."]),
            (["{TECHCO} tests drone deliveries in {CITY}"],
             ["{TECHCO} has begun testing drone deliveries of small parcels to homes on the outskirts of {CITY}, the company said on {DAY}."],
             ["The drones can carry packages weighing up to two kilograms."]),
            (["Climate model predicts wetter winters"],
             ["Scientists say a new climate model suggests winters in {REGION} Europe could become noticeably wetter over the next few decades."],
             ["The model was run on one of the fastest supercomputers in the world."]),
        ],
        "hard": [
            (["{COUNTRY} government backs national satellite plan"],
             ["The government of {COUNTRY} said on {DAY} it would spend {MONEY} on a national satellite programme to improve weather forecasts and rural internet access."],
             ["The first satellite is due to launch in {YEAR}."]),
            (["Sports scientists test smart running shoes"],
             ["Sports scientists in {CITY} are testing running shoes fitted with tiny sensors that measure how each foot strikes the ground."],
             ["The team hopes the data will help prevent injuries."]),
            (["Chipmaker {TECHCO} shows off faster processor"],
             ["{TECHCO} demonstrated a processor on {DAY} that it says can run artificial intelligence software twice as fast as its current chips."],
             ["The chip will be made using a new manufacturing process."]),
            (["Online shops leaking customer data, study finds"],
             ["Researchers in {CITY} found that {NUM} popular online shops were sending customer details to advertisers without permission."],
             ["Several of the shops have since fixed the problem."]),
        ],
    },
}


def make_topic_item(rng: random.Random, cls: int, plain: bool = False) -> tuple[str, str]:
    """Return (title, description) for one news item of class `cls`."""
    t = TOPIC_STORIES[cls]
    titles, leads, follows = rng.choice(t["hard"] if rng.random() < 0.12 else t["stories"])
    values: dict[str, str] = {}
    title = fill(rng.choice(titles), rng, TOPIC_SLOTS, values)
    lead = fill(rng.choice(leads), rng, TOPIC_SLOTS, values)
    k = min(len(follows), rng.choices([0, 1, 2, 3], weights=[30, 42, 20, 8])[0])
    sentences = [lead] + [fill(f, rng, TOPIC_SLOTS, values) for f in rng.sample(follows, k)]
    desc = " ".join(sentences)
    if plain:
        return title, desc
    r = rng.random()
    if r < 0.35:
        desc = fill("{CITYUP} ({AGENCY}) - ", rng, TOPIC_SLOTS, values) + desc
    elif r < 0.55:
        desc = fill("{AGENCY} - ", rng, TOPIC_SLOTS, values) + desc
    if rng.random() < 0.2:
        title += fill(" ({AGENCY})", rng, TOPIC_SLOTS, values)
    return title, desc


def agnews_field(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def build_topic(rng: random.Random) -> tuple[list[tuple[int, str, str]], set[str]]:
    rows: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for cls in (1, 2, 3, 4):
        n = 0
        while n < 100:
            title, desc = make_topic_item(rng, cls)
            if title in seen:
                continue
            seen.add(title)
            rows.append((cls, title, desc))
            n += 1
    rng.shuffle(rows)
    # AG News leftovers: a few descriptions join two sentences with a literal
    # backslash-n, and a couple carry " #39;" instead of an apostrophe.
    multi = [i for i, (_, _, d) in enumerate(rows) if ". " in d and "\\" not in d]
    for i in rng.sample(multi, 5):
        c, t, d = rows[i]
        rows[i] = (c, t, d.replace(". ", ".\\n", 1))
    apos = [i for i, (_, _, d) in enumerate(rows) if "'" in d]
    for i in rng.sample(apos, 2):
        c, t, d = rows[i]
        rows[i] = (c, t, d.replace("'", " #39;", 1))
    texts = {t for _, t, _ in rows} | {d for _, _, d in rows}
    return rows, texts


def write_topic(out: Path, rows) -> None:
    d = out / "topic"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "news.csv", "w", encoding="utf-8", newline="") as f:
        for cls, title, desc in rows:
            f.write(",".join(agnews_field(x) for x in (str(cls), title, desc)) + "\n")
    with open(d / "classes.txt", "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(TOPIC_CLASSES) + "\n")


# ---------------------------------------------------------------------------
# 2. Sentiment (GLUE SST-2 format)
# ---------------------------------------------------------------------------

SENT_SLOTS = {
    "FILM": ["the film", "this movie", "the sequel", "the director's latest",
             "this documentary", "the comedy", "the thriller", "this adaptation",
             "the remake", "this animated feature", "the drama", "this road movie",
             "the horror film", "the biopic", "this musical", "the heist picture",
             "the series finale", "this western"],
    "PRODUCT": ["this blender", "the headset", "this vacuum cleaner", "the kettle",
                "this phone case", "the desk lamp", "this backpack", "the coffee grinder",
                "this pair of running shoes", "the office chair", "this keyboard",
                "the air fryer", "this tent", "the smart speaker"],
    "FASPECT": ["the script", "the cast", "the soundtrack", "the cinematography",
                "the pacing", "the dialogue", "the ending", "the lead performance",
                "the editing", "the direction", "the humor", "the story",
                "the central character", "the final act", "the effects work",
                "the supporting cast", "the score", "the opening scene"],
    "PFACT": ["it arrived early and well packed", "it feels solid in the hand",
              "it took two minutes to set up", "the price was fair",
              "customer service was quick and helpful", "it looks even better than the photos",
              "it is much quieter than my old one", "the instructions were clear"],
    "NFACT": ["it arrived with a cracked corner", "it feels cheap in the hand",
              "the instructions made no sense", "customer service never replied",
              "it started squeaking within days", "the finish peeled off after a month",
              "it is far louder than the description suggested", "it costs twice what it is worth"],
    "POSADJ": ["gorgeous", "witty", "moving", "heartfelt", "sharp", "clever",
               "delightful", "gripping", "tender", "luminous", "inventive", "funny",
               "thoughtful", "charming", "exhilarating", "warm", "smart", "affecting",
               "assured", "vibrant", "satisfying", "engrossing", "lovely", "memorable",
               "playful", "haunting", "graceful", "rewarding", "refreshing", "polished",
               "beautifully acted", "well crafted", "genuinely funny", "quietly powerful",
               "wonderfully strange", "surprisingly sweet"],
    "NEGADJ": ["dull", "tedious", "clumsy", "bland", "shallow", "lifeless", "muddled",
               "predictable", "overlong", "flat", "pretentious", "sloppy", "forgettable",
               "lazy", "incoherent", "joyless", "grating", "hollow", "listless",
               "tiresome", "contrived", "mediocre", "preachy", "disappointing",
               "awkward", "stale", "limp", "derivative", "badly paced", "painfully slow",
               "thoroughly confused", "oddly lifeless"],
    "PPOSADJ": ["sturdy", "reliable", "comfortable", "quiet", "intuitive", "well made",
                "easy to clean", "light", "fast", "solid", "excellent", "great value"],
    "PNEGADJ": ["flimsy", "noisy", "unreliable", "confusing", "cheap", "clunky",
                "uncomfortable", "slow", "overpriced", "fragile", "useless", "awkward"],
    "DULLWORD": ["boring", "dull", "predictable", "tedious", "less than engaging"],
    "GOODWORD": ["good", "funny", "clever", "interesting", "exciting", "original"],
    "POSVP": ["keeps you guessing until the very end", "earns every one of its tears",
              "makes two hours fly by", "rewards patient viewers",
              "finds real warmth in small moments", "lands nearly every joke",
              "stays with you long after the credits roll",
              "treats its audience like adults", "builds to a genuinely thrilling climax",
              "never puts a foot wrong"],
    "NEGVP": ["drags on long after the point is made", "never finds its footing",
              "wastes a talented cast", "feels like a rough draft",
              "falls apart in the final act", "mistakes noise for excitement",
              "runs out of ideas halfway through", "telegraphs every twist",
              "confuses being loud with being funny", "forgets to give us anyone to care about"],
    "PPOSVP": ["works exactly as advertised", "has held up after months of daily use",
               "was easy to set up in minutes", "does everything i need",
               "still looks new after a year", "makes my mornings easier"],
    "PNEGVP": ["stopped working after two weeks", "rattles every time i use it",
               "drains the battery far too quickly", "broke the first time i dropped it",
               "never connected properly", "smells of plastic even now"],
    "POSNP": ["a small gem", "a real crowd-pleaser", "a triumph", "a minor classic",
              "a welcome surprise", "one of the best films of the year",
              "a joy from start to finish", "an absolute treat"],
    "NEGNP": ["a chore", "a mess", "a missed opportunity", "a waste of time",
              "a long slog", "a pale copy of better films", "an empty exercise",
              "a real letdown"],
    "ACTOR": ["the lead actress", "the young star", "the veteran actor", "the newcomer",
              "the comic lead", "the child actor", "the villain"],
    "DURATION": ["a week", "two weeks", "a month", "three days", "one afternoon"],
    "ADV": ["utterly", "consistently", "remarkably", "thoroughly", "quietly", "often"],
}

SENT_TEMPLATES = {
    1: [
        "{FILM} is {POSADJ} and {POSADJ2}.",
        "A {POSADJ}, {POSADJ2} film that {POSVP}.",
        "{FILM} is never {DULLWORD}.",
        "Not bad at all; {FILM} {POSVP}.",
        "{FASPECT} is {POSADJ}, and {FASPECT2} {POSVP}.",
        "Despite a slow start, {FILM} turns into {POSNP}.",
        "I loved {FILM}; it's {POSADJ} and {ADV} {POSADJ2}.",
        "{ADV} {POSADJ} and {POSADJ2}",
        "{POSNP}, thanks to {ACTOR}",
        "{ACTOR} is {POSADJ} in a role that could easily have been {NEGADJ}",
        "It's hard to imagine anyone not enjoying {FILM}.",
        "{FILM} isn't perfect, but it {POSVP}.",
        "You won't find a more {POSADJ} film this year.",
        "{FILM} is {POSNP}: {POSADJ}, {POSADJ2} and never {DULLWORD}.",
        "{PRODUCT} {PPOSVP}.",
        "{PRODUCT} is {PPOSADJ}, and {PFACT}.",
        "I was worried it would be {PNEGADJ}, but {PRODUCT} {PPOSVP}.",
        "Not cheap, but {PRODUCT} is worth every penny.",
        "Not bad at all: {PFACT}, and {PRODUCT} {PPOSVP}.",
        "Who knew that {FILM} could be so {POSADJ}?",
        "Even when {FASPECT} stumbles, {FILM} {POSVP}.",
        "For all its {NEGADJ} moments, {FILM} is {POSNP}.",
        "{FILM} is the rare crowd-pleaser that {POSVP}, and {ACTOR} gives the kind of {POSADJ} performance that reminds you why you go to the movies in the first place, even if the trailer made it look {NEGADJ}.",
        "Although the first half hour is {NEGADJ} and {FASPECT} takes a while to settle, {FILM} eventually {POSVP}, and by the end i was completely won over by how {POSADJ} and {POSADJ2} it all felt.",
        "Never less than {GOODWORD}",
        "I can't remember the last time a film was this {POSADJ}.",
        "{FASPECT} alone makes {FILM} worth seeing.",
    ],
    0: [
        "{FILM} is {NEGADJ} and {NEGADJ2}.",
        "A {NEGADJ}, {NEGADJ2} film that {NEGVP}.",
        "{FILM} is not {GOODWORD} enough to justify its running time.",
        "Never {POSADJ}, rarely {GOODWORD}, and far too long.",
        "{FASPECT} is {NEGADJ}, and {FASPECT2} {NEGVP}.",
        "For all its {POSADJ} moments, {FILM} is {NEGNP}.",
        "I wanted to like {FILM}, but it's {NEGADJ}.",
        "{ADV} {NEGADJ} and {NEGADJ2}",
        "{NEGNP}, even with {ACTOR}",
        "{ACTOR} tries hard, but {FILM} {NEGVP}.",
        "It's not a good film, and it isn't even fun as a bad one.",
        "{FILM} doesn't work, because it {NEGVP}.",
        "Despite a {POSADJ} cast, {FILM} is {NEGNP}.",
        "{FILM} is {NEGNP}: {NEGADJ}, {NEGADJ2} and never {GOODWORD}.",
        "{PRODUCT} {PNEGVP}.",
        "{PRODUCT} is {PNEGADJ}, and {NFACT}.",
        "The reviews said it was {PPOSADJ}, but {PRODUCT} {PNEGVP}.",
        "Not worth the money; {PRODUCT} {PNEGVP}.",
        "{PFACT}, but after {DURATION} {PRODUCT} started to feel {PNEGADJ}.",
        "Who thought {FILM} needed to be this {NEGADJ}?",
        "Even {FASPECT} can't save {FILM}.",
        "There's nothing {POSADJ} about {FILM}.",
        "{FILM} has a {POSADJ} premise and a {POSADJ2} cast, but it {NEGVP}, and by the time the last scene arrives you will have stopped caring about any of the people on screen or what happens to them.",
        "The trailer promised something {POSADJ}, yet {FILM} {NEGVP}, and not even {ACTOR}, who does what little the script allows, can stop the whole thing from feeling {NEGADJ} and {NEGADJ2}.",
        "Never as {GOODWORD} as it thinks it is",
        "I can't recommend {FILM} to anyone.",
        "{FASPECT} alone is enough to make {FILM} {NEGADJ}.",
    ],
}


def sst_tokenize(text: str) -> str:
    """Lower-case and split punctuation/clitics the way SST-2 text looks."""
    s = text.lower()
    s = s.replace("can't", "ca n't").replace("won't", "wo n't")
    s = re.sub(r"(\w)n't\b", r"\1 n't", s)
    s = re.sub(r"(\w)'(s|re|ve|ll|d|m)\b", r"\1 '\2", s)
    s = re.sub(r"([,.!?;:])", r" \1 ", s)
    return " ".join(s.split())


def natural_case(text: str) -> str:
    text = re.sub(r"\bi\b", "I", text)
    return text[0].upper() + text[1:]


def make_review(rng: random.Random, label: int) -> str:
    return natural_case(fill(rng.choice(SENT_TEMPLATES[label]), rng, SENT_SLOTS))


def build_sentiment(rng: random.Random):
    per_label = {0: [], 1: []}
    seen: set[str] = set()
    for label in (1, 0):
        while len(per_label[label]) < 210:
            tok = sst_tokenize(make_review(rng, label))
            if tok in seen:
                continue
            seen.add(tok)
            per_label[label].append(tok)
    train, dev = [], []
    for label in (0, 1):
        items = per_label[label]
        train += [(t, label) for t in items[:160]]
        dev += [(t, label) for t in items[160:]]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def write_sentiment(out: Path, train, dev) -> None:
    d = out / "sentiment"
    d.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.tsv", train), ("dev.tsv", dev)):
        with open(d / name, "w", encoding="utf-8", newline="") as f:
            f.write("sentence\tlabel\n")
            for text, label in rows:
                f.write(f"{text} \t{label}\n")


# ---------------------------------------------------------------------------
# 3. NER (CoNLL-2003 format, BIO tags)
# ---------------------------------------------------------------------------

# Entity pools: (shared pool used by every split, pool used only in test).
NER_POOLS = {
    "PER": (
        [f"{f} {l}" for f, l in zip(FIRST_NAMES[:40], LAST_NAMES[:40])],
        [f"{f} {l}" for f, l in zip(FIRST_NAMES[40:], reversed(LAST_NAMES[40:]))]
        + ["Marguerite van der Berg", "Obi Nwachukwu", "Linnea Strand"],
    ),
    "SURNAME": (LAST_NAMES[:40], LAST_NAMES[40:]),
    "ORGC": (
        COMPANIES[:22] + TECH_COMPANIES[:10],
        COMPANIES[22:] + TECH_COMPANIES[10:],
    ),
    "CLUB": (CLUBS[:11], CLUBS[11:]),
    "ORGI": (
        ["United Nations", "European Union", "World Bank", "Red Cross",
         "African Union", "World Health Organization", "International Monetary Fund"],
        ["Asian Development Bank", "World Trade Organization", "Interpol",
         "World Food Programme"],
    ),
    "CITY": (CITIES[:50], CITIES[50:]),
    "COUNTRY": (COUNTRIES[:36], COUNTRIES[36:]),
    "NAT": (
        ["German", "French", "Brazilian", "Japanese", "Kenyan", "Canadian", "Italian",
         "Polish", "Dutch", "Spanish", "Australian", "Indian", "Mexican", "Swedish",
         "Egyptian", "Turkish"],
        ["Norwegian", "Chilean", "Vietnamese", "Ghanaian", "Portuguese", "Hungarian"],
    ),
    "EVENT": (
        ["World Cup", "Olympic Games", "Champions League", "Asian Games", "Davis Cup",
         "Commonwealth Games", "Tour de France", "European Championship"],
        ["Ryder Cup", "Africa Cup of Nations", "Winter Olympics", "Copa America"],
    ),
}
SLOT_TYPE = {"PER": "PER", "SURNAME": "PER", "ORGC": "ORG", "CLUB": "ORG",
             "ORGI": "ORG", "CITY": "LOC", "CITYUP": "LOC", "COUNTRY": "LOC",
             "NAT": "MISC", "EVENT": "MISC"}

# Non-entity value slots: (generator, POS).
NER_VALUES = {
    "DAY": (lambda r: r.choice(DAYS), "NNP"),
    "MONTH": (lambda r: r.choice(MONTHS), "NNP"),
    "YEAR": (lambda r: str(r.randint(2009, 2031)), "CD"),
    "NUM": (lambda r: str(r.randint(2, 40)), "CD"),
    "BIGNUM": (lambda r: f"{r.randint(2, 90)},000", "CD"),
    "GOALS": (lambda r: str(r.randint(0, 4)), "CD"),
    "SCORE": (lambda r: f"{r.randint(0, 4)}-{r.randint(0, 3)}", "CD"),
    "DATE": (lambda r: f"20{r.randint(27, 31)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}", "CD"),
    "TIME": (lambda r: f"2:{r.randint(4, 15):02d}.{r.randint(10, 99)}", "CD"),
}

NER_TEMPLATES = [
    "{PER} , chief executive of {ORGC} , said the company would open a new office in {CITY} next year .",
    "{ORGC} said on {DAY} it had agreed to buy {ORGC} for {NUM} million dollars .",
    "{NAT} officials met their {NAT} counterparts in {CITY} to discuss new trade rules .",
    "{PER} scored twice as {CLUB} beat {CLUB} {SCORE} on {DAY} .",
    "The {EVENT} will be held in {COUNTRY} for the first time , organisers said .",
    "{CITYUP} {DATE}",
    "{CITYUP} {DATE}",
    "Shares in {ORGC} rose {NUM} percent in {CITY} on {DAY} .",
    "{PER} told reporters in {CITY} that talks with the {ORGI} were going well .",
    "Police said two men were arrested late on {DAY} .",
    "{PER} of {COUNTRY} won the title after beating {SURNAME} in straight sets .",
    "{NAT} President {PER} arrived in {CITY} on {DAY} for a three-day visit .",
    "A spokesman for {ORGC} declined to comment on the report .",
    "{SURNAME} , who joined {CLUB} from {CLUB} in {YEAR} , has scored {NUM} goals this season .",
    "The {ORGI} said aid would reach {COUNTRY} within days .",
    "{CLUB} {GOALS} {CLUB} {GOALS}",
    "{CLUB} {GOALS} {CLUB} {GOALS}",
    "Prices were mostly unchanged in quiet trading .",
    "{PER} , a {NAT} engineer , has worked for {ORGC} since {YEAR} .",
    "Fans in {CITY} celebrated late into the night after the {EVENT} final .",
    "{ORGC} and {ORGC} plan to build a factory near {CITY} .",
    "The {ORGI} warned that growth in {COUNTRY} would slow this year .",
    "{SURNAME} said he was disappointed with the result but proud of the team .",
    "The minister flew to {CITY} after meeting {PER} in {COUNTRY} .",
    "{NAT} striker {PER} missed the {EVENT} with a knee injury .",
    "Heavy rain caused flooding in parts of {COUNTRY} , including the city of {CITY} .",
    "Analysts at {ORGC} expect the central bank to raise rates in {MONTH} .",
    "{PER} will replace {PER} as head of the {ORGI} mission in {COUNTRY} .",
    "The company said sales in {COUNTRY} had doubled since {YEAR} .",
    "It was the first win for {CLUB} in {NUM} matches .",
    "Talks between {COUNTRY} and {COUNTRY} ended without agreement on {DAY} .",
    "{PER} ( {COUNTRY} ) {TIME}",
    "The festival attracted more than {BIGNUM} visitors , many of them {NAT} tourists .",
    "{ORGC} shares fell after the {NAT} regulator opened an investigation .",
    "Organisers of the {EVENT} said tickets had sold out within hours .",
    "{PER} , the {NAT} foreign minister , is expected to visit {CITY} next week .",
    "Officials did not say when the bridge would reopen .",
    "{SURNAME} has been named in the squad for the {EVENT} despite missing most of the season .",
    "Traffic was diverted around central {CITY} for most of the day .",
    "{ORGC} , based in {CITY} , employs about {BIGNUM} people .",
    "Speaking in {CITY} , {PER} said the {ORGI} would publish its report in {MONTH} .",
    "The {NAT} government has promised to cut taxes for small businesses .",
    "{ORGC} chairman {PER} said the results were better than expected .",
    "Temperatures in {CITY} reached {NUM} degrees on {DAY} , the highest since records began .",
    "{PER} , who spent {NUM} years at {ORGC} before moving to {CITY} , said on {DAY} that the new venture would focus on customers in {COUNTRY} and {COUNTRY} , and that it hoped to hire more than {BIGNUM} people by the end of {YEAR} .",
    "The {ORGI} said on {DAY} that it had sent a team of {NUM} experts to {COUNTRY} to help local officials respond to the outbreak , and that a second team from {CITY} would follow later in the week once the roads had been cleared .",
    "Coach {PER} said {CLUB} would travel to {CITY} without {SURNAME} , who is still recovering from an ankle injury .",
    "The {NAT} team finished third behind {COUNTRY} and {COUNTRY} .",
    "Investors were waiting for the latest figures on jobs and inflation .",
    "Reporters could not reach the company for comment .",
    "The airline said flights between {CITY} and {CITY} would resume on {DAY} .",
    "{PER} won the {EVENT} stage by {NUM} seconds .",
]

# Small POS lookup for the template words (POS is not used for training but
# must look plausible). Anything unknown falls back to simple heuristics.
POS_LOOKUP = {
    "the": "DT", "a": "DT", "an": "DT", "no": "DT",
    "of": "IN", "in": "IN", "on": "IN", "for": "IN", "from": "IN", "with": "IN",
    "after": "IN", "at": "IN", "by": "IN", "since": "IN", "about": "IN",
    "between": "IN", "around": "IN", "near": "IN", "behind": "IN", "within": "IN",
    "despite": "IN", "than": "IN", "that": "IN", "as": "IN", "before": "IN",
    "including": "VBG", "into": "IN", "once": "IN",
    "and": "CC", "but": "CC", "to": "TO",
    "it": "PRP", "he": "PRP", "their": "PRP$", "its": "PRP$", "them": "PRP",
    "who": "WP", "when": "WRB",
    "said": "VBD", "would": "MD", "will": "MD", "could": "MD",
    "open": "VB", "buy": "VB", "discuss": "VB", "be": "VB", "held": "VBN",
    "rose": "VBD", "told": "VBD", "were": "VBD", "was": "VBD", "won": "VBD",
    "beat": "VBD", "arrived": "VBD", "declined": "VBD", "comment": "VB",
    "joined": "VBD", "has": "VBZ", "had": "VBD", "scored": "VBD", "reach": "VB",
    "worked": "VBN", "celebrated": "VBD", "plan": "VBP", "build": "VB",
    "warned": "VBD", "slow": "VB", "meeting": "VBG", "missed": "VBD",
    "caused": "VBD", "expect": "VBP", "raise": "VB", "replace": "VB",
    "doubled": "VBN", "ended": "VBD", "attracted": "VBD", "fell": "VBD",
    "opened": "VBD", "sold": "VBN", "is": "VBZ", "expected": "VBN", "visit": "VB",
    "did": "VBD", "say": "VB", "reopen": "VB", "been": "VBN", "named": "VBN",
    "missing": "VBG", "diverted": "VBN", "based": "VBN", "employs": "VBZ",
    "speaking": "VBG", "publish": "VB", "promised": "VBN", "cut": "VB",
    "reached": "VBD", "began": "VBD", "spent": "VBD", "moving": "VBG",
    "focus": "VB", "hoped": "VBD", "hire": "VB", "sent": "VBN", "help": "VB",
    "respond": "VB", "follow": "VB", "cleared": "VBN", "travel": "VB",
    "recovering": "VBG", "finished": "VBD", "waiting": "VBG", "resume": "VB",
    "flew": "VBD", "agreed": "VBN", "arrested": "VBN", "going": "VBG",
    "unchanged": "JJ", "beating": "VBG",
    "new": "JJ", "next": "JJ", "first": "JJ", "three-day": "JJ", "quiet": "JJ",
    "late": "RB", "small": "JJ", "central": "JJ", "foreign": "JJ", "local": "JJ",
    "heavy": "JJ", "third": "JJ", "latest": "JJS", "highest": "JJS", "second": "JJ",
    "disappointed": "JJ", "proud": "JJ", "straight": "JJ", "better": "JJR",
    "more": "JJR", "most": "JJS", "still": "RB", "mostly": "RB", "well": "RB",
    "twice": "RB", "not": "RB", "later": "RB", "even": "RB",
    "two": "CD", "million": "CD",
    "percent": "NN", "year": "NN", "week": "NN", "day": "NN", "night": "NN",
    "this": "DT", "these": "DT", "flooding": "NN", "men": "NNS", "people": "NNS",
    "police": "NNS",
}

PUNCT = {",", ".", "(", ")", ":", ";"}
NP_TAGS = {"DT", "JJ", "JJR", "JJS", "NN", "NNS", "NNP", "NNPS", "CD", "PRP",
           "PRP$", "POS"}


def guess_pos(tok: str, first: bool = False) -> str:
    if tok in PUNCT:
        return tok
    low = tok.lower()
    if (tok.islower() or first) and low in POS_LOOKUP:
        return POS_LOOKUP[low]
    if re.fullmatch(r"[\d.,:-]+", tok):
        return "CD"
    if tok[0].isupper() and not first:
        return "NNP"
    if low.endswith("ly"):
        return "RB"
    if low.endswith("ing"):
        return "VBG"
    if low.endswith("ed"):
        return "VBD"
    if low.endswith("s") and not low.endswith("ss"):
        return "NNS"
    return "NN"


def chunk_tags(pos_tags: list[str], ner_tags: list[str]) -> list[str]:
    chunks: list[str] = []
    prev = "O"
    for i, p in enumerate(pos_tags):
        nxt = pos_tags[i + 1] if i + 1 < len(pos_tags) else ""
        if p in NP_TAGS:
            new_np = p in ("DT", "PRP$", "PRP", "POS") or prev not in ("B-NP", "I-NP")
            # an entity starts a new NP unless a determiner/adjective leads into it
            if ner_tags[i].startswith("B-") and i > 0 and pos_tags[i - 1] not in (
                    "DT", "JJ", "JJR", "JJS", "PRP$"):
                new_np = True
            if i > 0 and pos_tags[i - 1] == "PRP":
                new_np = True
            c = "B-NP" if new_np else "I-NP"
        elif p.startswith("VB") or p == "MD" or (p == "TO" and nxt.startswith("VB")):
            c = "I-VP" if prev in ("B-VP", "I-VP") else "B-VP"
        elif p in ("IN", "TO"):
            c = "B-PP"
        elif p == "RB":
            c = "I-VP" if prev in ("B-VP", "I-VP") and nxt.startswith("VB") else "B-ADVP"
        elif p in ("WP", "WRB"):
            c = "B-NP" if p == "WP" else "B-ADVP"
        else:
            c = "O"
        chunks.append(c)
        prev = c
    return chunks


def make_ner_sentence(rng: random.Random, test_split: bool) -> list[tuple[str, str, str, str]]:
    template = rng.choice(NER_TEMPLATES)
    tokens: list[tuple[str, str, str]] = []  # (token, pos, ner)
    used: set[str] = set()
    for k, piece in enumerate(template.split()):
        m = re.fullmatch(r"\{([A-Z]+)\}", piece)
        if not m:
            tokens.append((piece, guess_pos(piece, first=(k == 0)), "O"))
            continue
        slot = m.group(1)
        if slot in NER_VALUES:
            gen, pos = NER_VALUES[slot]
            tokens.append((gen(rng), pos, "O"))
            continue
        pool_key = "CITY" if slot == "CITYUP" else slot
        shared, unseen = NER_POOLS[pool_key]
        value = ""
        for _ in range(30):
            pool = unseen if (test_split and rng.random() < 0.45) else shared
            value = rng.choice(pool)
            if value not in used:
                break
        used.add(value)
        if slot == "CITYUP":
            value = value.upper()
        etype = SLOT_TYPE[slot]
        for j, w in enumerate(value.split()):
            if slot == "NAT":
                pos = "JJ"
            elif w in ("of", "de", "van", "der") and j > 0:
                pos = "IN" if w == "of" else "NNP"
            elif w == "and":
                pos = "CC"
            else:
                pos = "NNP"
            tokens.append((w, pos, ("B-" if j == 0 else "I-") + etype))
    pos_tags = [p for _, p, _ in tokens]
    ner_tags = [n for _, _, n in tokens]
    chunks = chunk_tags(pos_tags, ner_tags)
    # keep whole multi-token entities inside one NP chunk
    for i in range(1, len(tokens)):
        if ner_tags[i].startswith("I-"):
            chunks[i] = "I-NP"
        elif ner_tags[i].startswith("B-") and chunks[i] not in ("B-NP", "I-NP"):
            chunks[i] = "B-NP"
    if ner_tags[0] != "O":
        chunks[0] = "B-NP"
    return [(t, p, c, n) for (t, p, n), c in zip(tokens, chunks)]


def build_ner(rng: random.Random) -> dict[str, list[list[list[tuple]]]]:
    sizes = {"train": 300, "dev": 60, "test": 80}
    splits: dict[str, list[list[list[tuple]]]] = {}
    for split, n in sizes.items():
        sents = []
        seen: set[str] = set()
        while len(sents) < n:
            s = make_ner_sentence(rng, split == "test")
            key = " ".join(t for t, _, _, _ in s)
            if key in seen:
                continue
            seen.add(key)
            sents.append(s)
        docs = []
        i = 0
        while i < n:
            size = rng.randint(8, 12)
            if n - (i + size) < 8:  # do not leave a tiny last document
                size = n - i
            docs.append(sents[i:i + size])
            i += size
        splits[split] = docs
    return splits


def write_ner(out: Path, splits) -> None:
    d = out / "ner"
    d.mkdir(parents=True, exist_ok=True)
    for split, docs in splits.items():
        lines: list[str] = []
        for doc in docs:
            lines.append("-DOCSTART- -X- -X- O")
            lines.append("")
            for sent in doc:
                lines.extend(" ".join(row) for row in sent)
                lines.append("")
        with open(d / f"{split}.txt", "w", encoding="utf-8", newline="") as f:
            f.write("\n".join(lines) + "\n")  # ends with "\n\n" like the real files


# ---------------------------------------------------------------------------
# 4. Corpus to embed (id,text CSV)
# ---------------------------------------------------------------------------

GENERAL_SLOTS = {
    "FIRST": FIRST_NAMES,
    "LAST": LAST_NAMES,
    "CITY": CITIES,
    "DAY": DAYS,
    "MONTH": MONTHS,
    "NUM": lambda r: str(r.randint(5, 45)),
    "PLACE": ["library", "swimming pool", "community hall", "post office",
              "farmers' market", "bike shop", "bakery", "museum", "park cafe"],
    "STREET": ["Elm Street", "Mill Lane", "Station Road", "Harbour Walk", "Orchard Way",
               "Church Street", "Bridge Road", "Chestnut Avenue"],
    "PET": ["a grey cat", "an old sheepdog", "two rabbits", "a very loud parrot",
            "a rescue greyhound", "a tortoise"],
    "PETNAME": ["Biscuit", "Pepper", "Mango", "Captain", "Juniper", "Noodle", "Olive"],
    "CRAFT": ["pottery", "bookbinding", "watercolour painting", "woodworking",
              "knitting", "photography", "calligraphy", "bread making"],
    "COLOR": ["green", "yellow", "blue", "grey", "terracotta", "sage"],
    "FOOD": ["lentil soup", "banana bread", "vegetable curry", "apple crumble",
             "tomato sauce", "roast potatoes", "lemon cake"],
    "WEATHER": ["heavy rain", "strong winds", "a light frost", "thick fog",
                "thunderstorms", "unusually warm sunshine"],
    "SEASON": ["spring", "summer", "autumn", "winter"],
}

GENERAL_TEMPLATES = [
    "The {PLACE} on {STREET} will be closed for repairs until the end of {MONTH}.",
    "Add the chopped onions, a pinch of salt and two cloves of garlic, then cook gently for {NUM} minutes.",
    "Our neighbours have adopted {PET} called {PETNAME}, and it already rules the garden.",
    "If the weather holds, we'll walk along the river on {DAY} and have lunch in the {PLACE}.",
    "The train to {CITY} was delayed by {NUM} minutes, so {FIRST} finished a whole book on the platform.",
    "Remember to water the tomatoes every morning during the hot weeks of {SEASON}.",
    "The museum's new exhibition traces the history of {CRAFT} from the 1800s to the present day.",
    "{FIRST} spent the weekend repainting the kitchen a pale shade of {COLOR}.",
    "Volunteers collected {NUM} bags of litter from the beach on {DAY} morning.",
    "The recipe for {FOOD} calls for ripe fruit, brown sugar, and a generous handful of walnuts.",
    "The {PLACE} is offering free {CRAFT} classes for beginners every {DAY} evening.",
    "We rented a small cottage outside {CITY} with a view of the hills and a wood-burning stove.",
    "Please bring a packed lunch, sturdy shoes and a waterproof jacket for {DAY}'s hike.",
    "The bakery on {STREET} sells out of cinnamon rolls by nine o'clock most days.",
    "{FIRST} asked whether the meeting could be moved from {DAY} to {DAY2}.",
    "After three failed attempts, {FIRST}'s {FOOD} finally turned out the way it should.",
    "The council is asking residents for ideas on how to use the empty lot on {STREET}.",
    "Cycling to work takes about {NUM} minutes, roughly the same as the bus on a busy morning.",
    "The children built a bird feeder out of an old milk carton, some string and a handful of seeds.",
    "The sign on the door of the {PLACE} simply said \"Back in ten minutes\", but nobody came back for an hour.",
    "Forecasters expect {WEATHER} across the region on {DAY}, so outdoor events may be cancelled.",
    "{FIRST} {LAST} has been teaching {CRAFT} at the community centre for {NUM} years and still loves it.",
    "Leftover {FOOD} keeps for three days in the fridge and freezes well.",
    "The path along {STREET} is lovely in {SEASON}, when the trees turn and the air smells of woodsmoke.",
    "My grandmother's advice was simple: eat well, sleep early, and never skip breakfast.",
    "{FIRST} finally fixed the squeaky gate after putting it off for most of {SEASON}.",
    "Tickets for the {MONTH} concert at the {PLACE} go on sale on {DAY}.",
]


def build_corpus(rng: random.Random, exclude: set[str]) -> list[tuple[str, str]]:
    texts: list[str] = []
    seen = set(exclude)

    def add(text: str) -> bool:
        if text in seen:
            return False
        seen.add(text)
        texts.append(text)
        return True

    n_news = 0
    while n_news < 85:
        cls = (n_news % 4) + 1
        title, desc = make_topic_item(rng, cls, plain=True)
        text = title + "." if rng.random() < 0.25 else desc
        n_news += add(text)
    n_rev = 0
    while n_rev < 60:
        n_rev += add(make_review(rng, n_rev % 2))
    n_gen = 0
    while n_gen < 55:
        n_gen += add(fill(rng.choice(GENERAL_TEMPLATES), rng, GENERAL_SLOTS))
    rng.shuffle(texts)
    return [(f"doc-{i:04d}", t) for i, t in enumerate(texts, start=1)]


def write_corpus(out: Path, rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "text"])
    w.writerows(rows)
    with open(out / "corpus.csv", "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())


# ---------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="output folder (default: the folder of this script)")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    topic_rows, topic_texts = build_topic(random.Random(SEED + 1))
    write_topic(out, topic_rows)

    train, dev = build_sentiment(random.Random(SEED + 2))
    write_sentiment(out, train, dev)

    write_ner(out, build_ner(random.Random(SEED + 3)))

    corpus = build_corpus(random.Random(SEED + 4), topic_texts)
    write_corpus(out, corpus)

    print(f"wrote sample data to {out}")


if __name__ == "__main__":
    main()
