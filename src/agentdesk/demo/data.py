"""A deterministic, realistic day in a contact center — demo data for `agentdesk demo`.

`generate(seed, now)` returns plain rows (dicts) that map 1:1 onto the server tables. Everything is drawn from
one seeded `random.Random`, ids included, and every time is relative to `now`, so the same seed and the same
`now` give identical data, and the data always looks like "today".

The story model: a customer has *issues* (a double charge, a flaky router…). An issue is one to three
conversations on different channels — an email, then a call, then an SMS about the same thing — which is what
the desk's merged cross-channel timeline is for. Texts come from templates filled with per-issue variables
(amounts, order numbers, dates), so one issue tells a consistent story across its channels.

Standard library only; no SQL here (the loader is `agentdesk.demo.seed`).
"""

from __future__ import annotations

import random
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

Row = dict[str, Any]

DEMO_AGENT_NAME = "Alex Morgan"
DEMO_AGENT_EMAIL = "alex@demo.agentdesk.test"
COMPANY = "Ashgrove"
COMPANY_PHONE = "0800 555 0199"

N_CUSTOMERS = 300
N_CONVERSATIONS = 1300  # at least; the last issue may add one or two more
DEMO_AGENT_OPEN = 60  # open/pending conversations assigned to the demo agent
UNASSIGNED_OPEN = 80  # open conversations nobody has picked up yet
BREACHED_OPEN = 0.13  # share of open conversations whose SLA is already past
CSAT_RATED = 0.35  # share of closed conversations the customer rated (meta "csat" on the last message)

CHANNELS = ("phone", "email", "chat", "sms", "whatsapp")
STATUSES = ("open", "pending", "snoozed", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")

_MIN = 60
_HOUR = 3600
_DAY = 86400


@dataclass
class DemoData:
    """Rows per table (lists of dicts with the server's column names) and the demo agent's id."""

    teams: list[Row]
    agents: list[Row]
    agent_teams: list[Row]
    customers: list[Row]
    identities: list[Row]
    conversations: list[Row]
    interactions: list[Row]
    demo_agent_id: str

    def counts(self) -> dict[str, int]:
        return {
            "teams": len(self.teams),
            "agents": len(self.agents),
            "agent_teams": len(self.agent_teams),
            "customers": len(self.customers),
            "identities": len(self.identities),
            "conversations": len(self.conversations),
            "interactions": len(self.interactions),
        }


def generate(seed: int = 7, now: datetime | None = None) -> DemoData:
    """The demo day for `seed`, relative to `now` (aware; default: the current UTC time)."""
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return _Generator(seed, now.astimezone(UTC)).run()


# --------------------------------------------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------------------------------------------

_TEAMS = ("Billing", "Technical Support")
_TEAM_ADDRESS = {"Billing": "billing@demo.agentdesk.test", "Technical Support": "support@demo.agentdesk.test"}
_ESCALATION = {
    "Billing": ("billing operations", "payments", "Tier 2 billing"),
    "Technical Support": ("network operations", "Tier 2 technical", "field engineering"),
}

# name, email local part, role, teams
_AGENTS = (
    (DEMO_AGENT_NAME, "alex", "agent", _TEAMS),
    ("Priya Raman", "priya", "supervisor", _TEAMS),
    ("Jonas Becker", "jonas", "agent", ("Billing",)),
    ("Amara Okafor", "amara", "agent", ("Billing",)),
    ("Sofía Herrera", "sofia", "agent", ("Technical Support",)),
    ("Kenji Watanabe", "kenji", "agent", ("Technical Support",)),
    ("Chloé Martin", "chloe", "agent", _TEAMS),
    ("Dana Whitfield", "dana", "admin", ("Billing",)),
)

_US_FIRST = (
    "James", "Michael", "Robert", "David", "William", "Olivia", "Emma", "Ava", "Sophia", "Isabella", "Mia",
    "Charlotte", "Amelia", "Harper", "Evelyn", "Ethan", "Noah", "Liam", "Mason", "Logan", "Lucas", "Jackson",
    "Aiden", "Caleb", "Tyler", "Brandon", "Jasmine", "Destiny", "Keisha", "DeShawn", "Jamal", "Aaliyah", "Tanisha",
    "Marcus", "Brittany", "Kayla", "Megan", "Ashley", "Jennifer", "Jessica", "Christopher", "Matthew", "Kevin",
    "Brian", "Grace", "Hannah", "Madison", "Renée", "Zoë", "Dakota", "Trevor", "Shannon", "Wendell", "Bobbie",
)
_US_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor", "Thomas",
    "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson", "Walker",
    "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell",
    "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner", "Parker", "Collins", "Edwards", "Stewart",
    "Morris", "Murphy", "Cook", "Rogers", "Peterson", "Cooper", "Reed", "Bailey", "Bell", "Kelly", "Howard",
    "Ward", "Brooks", "Bennett", "Gray", "Hughes", "Price", "Sanders", "Foster", "Washington", "O'Neill",
    "McCarthy", "Kowalski", "Goldberg", "Rossi", "Van Buren", "DuBois",
)
_HISPANIC_FIRST = (
    "José", "María", "Luis", "Carmen", "Alejandro", "Guadalupe", "Sofía", "Diego", "Valeria", "Andrés", "Jesús",
    "Ximena", "Camila", "Mateo", "Lucía", "Rocío",
)
_HISPANIC_LAST = (
    "García", "Rodríguez", "Martínez", "Hernández", "López", "González", "Pérez", "Sánchez", "Ramírez", "Flores",
    "Rivera", "Gómez", "Díaz", "Reyes", "Cruz", "Morales", "Ortiz", "Gutiérrez", "Chávez", "Núñez",
)
_GB_FIRST = (
    "Oliver", "George", "Harry", "Jack", "Charlie", "Alfie", "Freddie", "Amelia", "Isla", "Poppy", "Freya",
    "Imogen", "Florence", "Rhys", "Callum", "Eilidh", "Siobhan", "Gareth", "Bethan", "Hamish", "Nigel", "Gemma",
    "Kirsty", "Declan", "Fiona", "Rupert",
)
_GB_LAST = (
    "Smith", "Jones", "Williams", "Taylor", "Davies", "Evans", "Thomas", "Roberts", "Hughes", "Wright", "Walker",
    "Wood", "Thompson", "White", "Edwards", "Hall", "Green", "Clarke", "Patel", "Khan", "Ahmed", "Hussain",
    "MacDonald", "Campbell", "Fitzgerald", "O'Brien", "Ashworth", "Pemberton", "Llewellyn", "Sinclair",
)
_AU_FIRST = ("Jack", "Matilda", "Lachlan", "Isla", "Cooper", "Ruby", "Mitchell", "Chloe", "Bree", "Hayden")
_AU_LAST = ("Smith", "Nguyen", "Williams", "Kelly", "Murphy", "Wilson", "O'Connor", "Mitchell", "Jones")
_DE_FIRST = (
    "Lukas", "Jürgen", "Anna", "Leonie", "Maximilian", "Jörg", "Sören", "Lena", "Björn", "Katharina", "Tobias",
    "Uwe", "Felix", "Hannah", "Günter", "Ursula", "Lea", "Matthias", "Sabine", "Dörte",
)
_DE_LAST = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schäfer", "Koch",
    "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann", "Krüger", "Hoffmann",
    "Groß", "Weiß", "Lehmann", "Köhler",
)
_FR_FIRST = (
    "Léa", "Chloé", "Hugo", "Théo", "Camille", "Élodie", "François", "Maëlle", "Noémie", "Gaëlle", "Jérôme",
    "Céline", "Benoît", "Inès", "Zoé", "Amélie", "Raphaël", "Hélène", "Loïc", "Anaïs",
)
_FR_LAST = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Petit", "Durand", "Leroy", "Moreau", "Lefèvre", "Girard",
    "Bonnet", "Fontaine", "Rousseau", "Lemaire", "Faure", "Mercier", "Chevalier", "Gauthier", "Barbier",
)
_ES_FIRST = (
    "Sofía", "Mateo", "Lucía", "Santiago", "Valentina", "Javier", "Martina", "Íñigo", "Álvaro", "Begoña",
    "Nuria", "Pilar", "Jordi", "Montserrat", "Raúl", "Ainhoa",
)
_ES_LAST = (
    "García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Díaz", "Muñoz", "Álvarez", "Romero",
    "Ruiz", "Jiménez", "Ibáñez", "Castillo", "Ortega", "Navarro", "Domínguez", "Vázquez", "Peña",
)
# Residents of the US/UK with names from elsewhere (they write in English): (first names, last names)
_DIASPORA = (
    (("Chinedu", "Ngozi", "Oluwaseun", "Adaeze", "Emeka", "Funmilayo"), ("Okafor", "Adeyemi", "Okonkwo", "Balogun", "Eze")),
    (("Aarav", "Ananya", "Priyanka", "Rohan", "Vikram", "Meera", "Arjun", "Divya"), ("Sharma", "Iyer", "Reddy", "Gupta", "Nair", "Kapoor")),
    (("Haruto", "Yui", "Sakura", "Ren", "Aoi", "Takeshi"), ("Sato", "Tanaka", "Suzuki", "Takahashi", "Nakamura")),
    (("Wei", "Mei", "Jun", "Xiaoling", "Hao", "Lin"), ("Chen", "Wang", "Zhang", "Liu", "Huang")),
    (("Linh", "Minh", "Thảo", "Quang", "Hương"), ("Nguyễn", "Trần", "Lê", "Phạm")),
    (("Łukasz", "Zofia", "Agnieszka", "Paweł", "Małgorzata"), ("Nowak", "Wójcik", "Mazur", "Krawczyk")),
    (("Øyvind", "Åsa", "Sigrún", "Bjørn", "Freja", "Mikael"), ("Hansen", "Lindqvist", "Johansson", "Nielsen", "Søndergaard")),
    (("Ayşe", "Emre", "Elif", "Mehmet", "Zeynep"), ("Yılmaz", "Çelik", "Demir", "Şahin", "Öztürk")),
    (("Saoirse", "Oisín", "Aoife", "Siobhán", "Ciarán", "Niamh"), ("Murphy", "Ó Briain", "Kelly", "Byrne", "Ní Mhaonaigh")),
    (("João", "Conceição", "Thiago", "Gabriela", "Leônidas"), ("Silva", "Santos", "Oliveira", "Gonçalves", "Araújo")),
    (("Omar", "Fatima", "Youssef", "Layla", "Karim", "Amira"), ("Haddad", "Khalil", "Mansour", "El-Amin", "Nasser")),
    (("Ji-woo", "Min-jun", "Seo-yeon", "Hyun-woo"), ("Park", "Kim", "Choi", "Jung")),
)

_CITIES = {
    "US": ("Austin", "Denver", "Portland", "Columbus", "Raleigh", "Sacramento", "Boise", "Madison", "Tucson", "Omaha"),
    "GB": ("Leeds", "Bristol", "Manchester", "Glasgow", "Cardiff", "Norwich", "York", "Brighton"),
    "AU": ("Brisbane", "Adelaide", "Perth", "Hobart", "Geelong"),
    "DE": ("Leipzig", "Köln", "Nürnberg", "Freiburg", "Düsseldorf", "Hamburg"),
    "FR": ("Lyon", "Nantes", "Toulouse", "Lille", "Montpellier", "Besançon"),
    "ES": ("Valencia", "Sevilla", "Bilbao", "Zaragoza", "Málaga", "Córdoba"),
}
_STREETS = {
    "US": ("{n} Maple Ave", "{n} Oak Street", "{n} Sunset Blvd", "{n} Lakeview Dr", "{n} Pine Ridge Rd"),
    "GB": ("{n} Church Lane", "{n} Victoria Road", "{n} Mill Street", "Flat {n}, Albion Court"),
    "AU": ("{n} Beach Rd", "{n} Wattle St", "{n} Kingfisher Cres"),
    "DE": ("Lindenstraße {n}", "Hauptstraße {n}", "Am Bahnhof {n}", "Goethestraße {n}"),
    "FR": ("{n} rue de la République", "{n} avenue Jean Jaurès", "{n} rue des Lilas"),
    "ES": ("Calle Mayor {n}", "Avenida de la Constitución {n}", "Calle del Sol {n}"),
}
# Fictional numbers in each country's drama/test ranges, in E.164 shape.
_US_AREA = (
    "212", "213", "312", "415", "512", "617", "206", "303", "404", "503", "602", "646", "702", "718", "720",
    "773", "786", "801", "813", "919", "971", "480", "614", "763", "857",
)
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com", "inbox.example.net", "post.example.org")
_COMPANY_DOMAINS = (
    ("Northwind Traders", "northwind.example"), ("Globex Ltd", "globex.example"), ("Initech", "initech.example"),
    ("Contoso GmbH", "contoso.example"), ("Umbrella Logistics", "umbrella.example"), ("Vandelay Industries", "vandelay.example"),
)
_CUSTOMER_NOTES = (
    "Prefers calls after 5pm.",
    "Hard of hearing — prefers chat or email.",
    "Works night shifts; don't call before noon.",
    "Account manager: Priya Raman.",
    "Small business account, 3 lines.",
    "Has been with us since 2014.",
    "Asked not to be contacted about offers.",
    "Lives in a rural area, limited coverage.",
    "Prefers to be addressed by first name.",
    "Spouse is authorised on the account.",
)

# --------------------------------------------------------------------------------------------------------------
# What people talk about (English)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Topic:
    key: str
    team: str | None  # None: either team
    weight: int
    label: str
    subject: tuple[str, ...]
    phrase: tuple[str, ...]
    open: tuple[str, ...]  # a first email's body
    short: tuple[str, ...]  # the same, as a chat line / SMS / what the caller says
    ask: tuple[str, ...]
    info: tuple[str, ...]
    fix: tuple[str, ...]
    summary: tuple[str, ...]  # an agent's one-line call summary
    note: tuple[str, ...]
    priority: tuple[int, int, int, int] = (15, 55, 22, 8)


_TOPICS = (
    _Topic(
        "double_charge", "Billing", 10, "Double charge",
        ("Charged twice for my {month} bill", "Double charge on my card ending {last4}", "Duplicate payment of {amount}"),
        ("the double charge of {amount}", "the duplicate payment on {date}"),
        (
            "I just checked my bank statement and I was charged {amount} twice on {date} for the same bill. Can you please refund the duplicate payment?",
            "My card ending {last4} shows two identical charges of {amount} from you on {date}. I only have one account, so one of these is a mistake.",
            "It looks like autopay ran twice this month: two payments of {amount}, both on {date}. This pushed my account into overdraft, so I need this fixed quickly.",
        ),
        ("I was charged {amount} twice on {date}", "There are two charges of {amount} on my card but only one bill", "You took {amount} twice from my account this month"),
        (
            "Sorry about that! Could you confirm the last 4 digits of the card and the date of both charges?",
            "I'm sorry for the trouble. Can you confirm the billing address on the account so I can verify you?",
            "Thanks for flagging this. Do both charges show as posted, or is one still pending?",
        ),
        ("Card ends in {last4}, both charges posted on {date}.", "Billing address is {street}, {city}. The account is under {name}.", "Both are posted, {amount} each. The second one went through a minute after the first."),
        (
            "I can see the duplicate payment. I've issued a refund of {amount} to the card ending {last4}; it should appear in 3-5 business days.",
            "Confirmed, it was a duplicate autopay run on our side. The {amount} refund is on its way and I've added a note so it doesn't happen again.",
            "The second charge is a pre-authorisation that drops off automatically within 48 hours, but I've also requested an expedited release.",
        ),
        ("Customer reported a duplicate charge of {amount} on {date}", "Caller disputed two identical payments of {amount}", "Customer asked about a second {amount} charge on card ending {last4}"),
        ("Duplicate autopay confirmed in billing system; refund of {amount} issued, ref {ticket}.", "Refund approved by supervisor, ticket {ticket}."),
    ),
    _Topic(
        "refund", "Billing", 9, "Refund request",
        ("Refund for returned order {order}", "Still waiting on my refund", "Refund request – order {order}"),
        ("the refund for order {order}", "the {amount} refund"),
        (
            "I returned order {order} on {date} (tracking {tracking}) and the refund of {amount} still hasn't shown up. Your website says 5 business days and it's been {days}.",
            "I cancelled order {order} before it shipped and was promised a full refund of {amount}. Could you tell me when I'll actually get it?",
            "The router I returned was received on {date} according to the courier, but my account still shows the {amount} equipment charge. Please refund it.",
        ),
        ("Where is my refund for order {order}?", "Still no refund of {amount} for my return", "I returned order {order} {days} days ago and have no refund yet"),
        (
            "I'm sorry for the wait. Could you share the return tracking number so I can match it to your order?",
            "Let me look into that. Did you return the item by courier or drop it at a store?",
            "Thanks. Can you confirm the refund should go back to the original card?",
        ),
        ("Tracking number is {tracking}, it was delivered on {date}.", "I dropped it at the {city} store, I have the receipt.", "Yes, same card, ending {last4}."),
        (
            "The warehouse hadn't scanned your return in yet. I've pushed it through manually and the {amount} refund has been issued today.",
            "Your refund of {amount} was processed on our side; banks usually take 3-5 business days to show it. Reference: {ticket}.",
            "I've issued the refund of {amount} to the card ending {last4} and added a {credit} goodwill credit for the delay.",
        ),
        ("Customer chasing refund of {amount} for returned order {order}", "Caller asked for the status of return {order}", "Customer reports equipment return not credited ({amount})"),
        ("Return for {order} received at warehouse on {date}, refund triggered manually.", "Refund approved by supervisor, ticket {ticket}.", "Goodwill credit {credit} applied for refund delay."),
    ),
    _Topic(
        "billing_dispute", "Billing", 8, "Billing question",
        ("Why is my bill {amount} this month?", "Unexpected charge on invoice {invoice}", "Question about my latest bill"),
        ("the {month} bill", "the extra charge on invoice {invoice}"),
        (
            "My bill for {month} is {amount}, which is much higher than usual. I haven't changed anything on my plan. Can you explain the extra charges?",
            "There's a \"service fee\" of {credit} on invoice {invoice} that I never agreed to. Please remove it.",
            "My promotional discount seems to have disappeared from this month's bill ({amount}). I was told it would last 24 months.",
        ),
        ("My bill is {amount} this month, why so high?", "There's a fee on invoice {invoice} I don't recognise", "My discount is missing from this month's bill"),
        (
            "I can take a look. Could you confirm the account number or the invoice number?",
            "Happy to review that with you. Which line item looks wrong?",
            "I'm sorry for the confusion. May I verify the account holder's name and billing address first?",
        ),
        ("Account number is {account}, invoice {invoice}.", "The line that says \"Late payment fee {credit}\" — I paid on time.", "Account holder is {name}, {street}, {city}."),
        (
            "The higher amount is a one-off pro-rata charge from your plan change. From next month you'll be back to {amount2}.",
            "That fee was applied in error. I've removed it and credited {credit} to your account; you'll see it on the next invoice.",
            "Your 12-month promotion ended on {date}, which is why the bill went up. I've applied a loyalty discount so your new monthly price is {amount2}.",
        ),
        ("Customer queried {month} bill of {amount} — pro-rata charge explained", "Caller disputed a fee on invoice {invoice}, fee removed", "Customer's promotional discount had ended, loyalty discount applied"),
        ("Fee on {invoice} reversed — system applied a late fee despite on-time payment.", "Loyalty discount applied, approved by {supervisor}. Ticket {ticket}."),
    ),
    _Topic(
        "payment_failed", "Billing", 6, "Payment failed",
        ("Payment declined but my card is fine", "Autopay failed for {month}", "Can't pay my bill online"),
        ("the failed payment", "the autopay problem"),
        (
            "I got an email saying my payment of {amount} failed, but my card ending {last4} works everywhere else. I don't want a late fee.",
            "Your website keeps saying \"payment could not be processed\" when I try to pay {amount}. I've tried two different cards.",
            "Autopay didn't go through this month and now there's a warning on my account. Nothing changed with my bank.",
        ),
        ("My payment of {amount} keeps failing", "Autopay failed but my card ending {last4} is fine", "Your website won't take my payment"),
        (
            "Sorry about that. Has the card's expiry date changed recently?",
            "Let me check. Could you tell me the exact error message you see?",
            "Can you confirm the billing postcode registered with your bank?",
        ),
        ("Oh, I did get a new card last month, same number but a new expiry date.", "It says \"Error 402: payment could not be authorised\".", "It's the address at {street}, {city}."),
        (
            "The card on file had an old expiry date. I've updated it and re-run the payment of {amount}; it went through and no late fee will be charged.",
            "Our payment provider had a problem this morning; it's fixed now and your payment of {amount} has been applied.",
            "I've taken the payment of {amount} and waived the late fee. You're all set.",
        ),
        ("Customer's autopay of {amount} failed — card expiry outdated", "Caller unable to pay online, error 402", "Customer worried about a late fee after a failed payment"),
        ("Payment gateway incident {incident} caused declines 08:00–10:30.", "Late fee waived as a one-time courtesy."),
    ),
    _Topic(
        "plan_upgrade", "Billing", 7, "Plan upgrade",
        ("Upgrade to {plan_new}", "Interested in a faster plan", "Question about upgrading my plan"),
        ("the upgrade to {plan_new}", "the plan change"),
        (
            "I'm working from home more and {plan} isn't cutting it anymore. What would it cost to move to {plan_new}, and is there a contract?",
            "I saw the {plan_new} offer on your website for {amount2}/month. Can I switch my existing account to it without a new installation?",
            "We just had another kid and need more data on our family plan. Could you upgrade us to {plan_new}?",
        ),
        ("I'd like to upgrade to {plan_new}", "How much is {plan_new}?", "Can I switch from {plan} to {plan_new}?"),
        (
            "Great choice! Would you like the change from today or from your next billing date?",
            "I can do that. Just to confirm, you'd like to keep your current number and equipment?",
            "Sure — {plan_new} is {amount2}/month on a 12-month term. Shall I go ahead?",
        ),
        ("From today please, the sooner the better.", "Yes, keep everything the same.", "Yes please, go ahead."),
        (
            "Done! You're now on {plan_new} at {amount2}/month. The speed change takes effect within 2 hours; restarting your router speeds it up.",
            "I've scheduled the upgrade to {plan_new} from your next billing date ({eta}). You'll get a confirmation email shortly.",
            "All set — {plan_new} is active and I've applied the online discount, so it's {amount2}/month.",
        ),
        ("Customer upgraded from {plan} to {plan_new}", "Upgrade to {plan_new} scheduled for the next billing date", "Customer switched to {plan_new} at {amount2}/month with online discount"),
        ("Upgrade to {plan_new} processed, order {order}.", "Customer eligible for loyalty pricing on {plan_new}."),
        (35, 50, 12, 3),
    ),
    _Topic(
        "cancellation", "Billing", 6, "Cancellation",
        ("Cancel my account", "Please cancel my {plan} subscription", "Cancellation request"),
        ("the cancellation request", "cancelling the account"),
        (
            "I'm moving abroad at the end of the month and need to cancel my {plan} service. What do I need to do with the equipment?",
            "I'd like to cancel. The price has gone up twice this year and I found a cheaper offer elsewhere.",
            "Please cancel my account effective {eta}. I've been a customer for years but the service has been unreliable lately.",
        ),
        ("I want to cancel my service", "Please cancel my account", "How do I cancel? I'm moving out on {eta}"),
        (
            "I'm sorry to hear you're thinking of leaving. Can I ask what's prompted the decision?",
            "I can help with that. Would you be open to hearing about a retention offer first?",
            "Understood. Could you confirm the date you'd like the service to end?",
        ),
        ("Mainly the price. {amount} a month is too much.", "Go on then, what can you offer?", "The end of the month, {eta}."),
        (
            "I've applied a 12-month discount that brings your bill down to {amount2}. If you change your mind, you can still cancel without a fee within 14 days.",
            "Your cancellation is booked for {eta}. A prepaid return bag for the router will arrive in a few days, and the final bill will be pro-rated.",
            "Cancellation confirmed for {eta}, reference {ticket}. Sorry to see you go!",
        ),
        ("Retention call — customer accepted {amount2}/month and stays", "Customer cancelling effective {eta}, return bag sent", "Cancellation confirmed for {eta}"),
        ("Retention offer {amount2}/month accepted — flag churn-risk for 6 months.", "Cancellation booked for {eta}, equipment return bag sent."),
    ),
    _Topic(
        "delivery_delay", "Billing", 8, "Delivery delay",
        ("Where is my order {order}?", "Order {order} still not delivered", "Delivery delayed – {order}"),
        ("order {order}", "the delivery of order {order}"),
        (
            "My order {order} was supposed to arrive on {date} but tracking ({tracking}) hasn't updated in {days} days. I need the new router before my old service is switched off.",
            "I was told my SIM card would be delivered within 2 days. It's been {days} days. Order {order}.",
            "The courier marked order {order} as delivered, but nothing arrived. I've checked with my neighbours.",
        ),
        ("Where is my order {order}?", "Order {order} says delivered but I don't have it", "Still waiting for order {order}, it's {days} days late"),
        (
            "I'm sorry about the delay. Can you confirm the delivery address on the order?",
            "Let me check with the courier. Is there a safe place they might have left it?",
            "Thanks. Could you confirm the order number and the name it was ordered under?",
        ),
        ("It's {street}, {city}.", "No, I checked everywhere, including the bins.", "Order {order}, under {name}."),
        (
            "The parcel got stuck at the {city} depot. I've arranged a replacement with next-day delivery, new tracking {tracking}.",
            "I've opened a lost-parcel claim ({ticket}) and a replacement has been dispatched today.",
            "The courier has confirmed it will be delivered tomorrow before noon. I've also refunded the {credit} delivery fee.",
        ),
        ("Order {order} stuck at the depot, replacement sent", "Caller reports order {order} marked delivered but not received, claim opened", "Customer chasing late order {order}, courier confirmed delivery tomorrow"),
        ("Courier claim {ticket} opened for {order}.", "Replacement shipped for {order}, tracking {tracking}."),
    ),
    _Topic(
        "invoice_copy", "Billing", 4, "Invoice copy",
        ("Copy of invoice {invoice}", "Need invoices for my expense report", "VAT invoice request"),
        ("a copy of invoice {invoice}", "the invoice request"),
        (
            "Could you send me a PDF copy of invoice {invoice}? I need it for my expense report and can't find it in the portal.",
            "I need the invoices for the last three months with our company name on them, for accounting.",
            "Can you re-issue invoice {invoice} with my company's VAT number? The current one only has my name.",
        ),
        ("Can you send me invoice {invoice}?", "I need a copy of my last bill", "I need invoices for the last 3 months"),
        (
            "Of course. Which email address should I send it to?",
            "Sure — is that for the whole account or one specific service?",
            "Could you share the VAT number and company name you'd like on it?",
        ),
        ("The email on the account is fine.", "Just the broadband, please.", "Company is {company}, VAT number GB 123 4567 89."),
        (
            "I've emailed invoice {invoice} as a PDF. You can also find all invoices under Billing → Documents in the app.",
            "I've re-issued invoice {invoice} with the company details; it's in your inbox now.",
            "I've sent the last three invoices to your email. Let me know if anything is missing.",
        ),
        ("Customer requested a copy of invoice {invoice}, sent by email", "Invoice {invoice} re-issued with company details", "Caller needed the last three invoices for expenses"),
        ("Invoice {invoice} re-issued with VAT details.", "Customer can't see invoices in the portal — possible permissions bug, raised {ticket}."),
        (40, 50, 8, 2),
    ),
    _Topic(
        "password_reset", "Technical Support", 9, "Password reset",
        ("Can't log in to my account", "Password reset email never arrives", "Locked out of the app"),
        ("the password reset", "the account lockout"),
        (
            "I've requested a password reset three times today and the email never arrives — not in spam either. I need to get into my account to pay my bill.",
            "The app says my account is locked after too many attempts. I'm sure I'm using the right password.",
            "I changed my email address last week and now I can't log in with either the old or the new one.",
        ),
        ("The password reset email never arrives", "My account is locked and I can't log in", "I forgot my password and the reset link doesn't work"),
        (
            "I can help with that. Which email address are you using to log in?",
            "For security, can you confirm your date of birth and the postcode on the account?",
            "Sorry about that! Are you trying on the app or the website?",
        ),
        ("The one on the account.", "Date of birth 14/03/1986, and I live at {street}.", "On the app, the latest version."),
        (
            "Your login email was still the old address. I've updated it, and you should receive the reset email within a few minutes.",
            "I've unlocked your account and sent a fresh reset link — it expires in 30 minutes, so please check your inbox now.",
            "I've reset your password manually; a temporary password has been sent by SMS. You'll be asked to change it at first login.",
        ),
        ("Caller not receiving reset emails — login email outdated", "Account unlocked after failed login attempts, reset link sent", "Password reset manually, temporary password sent by SMS"),
        ("Identity verified via DOB + postcode before unlocking.", "Reset emails bouncing — customer's mailbox is full."),
    ),
    _Topic(
        "outage", "Technical Support", 8, "Service outage",
        ("No internet in {city} since this morning", "Service down again", "Is there an outage in {city}?"),
        ("the outage in {city}", "the loss of service"),
        (
            "Our internet has been completely down since about 7am. All the lights on the router are red. Is there an outage in {city}? I work from home and this is costing me money.",
            "This is the third outage this month. No internet, no TV. When will this be fixed?",
            "Mobile data and home broadband are both down for us in {city}. The neighbours have the same problem.",
        ),
        ("Internet has been down since this morning in {city}", "Is there an outage? Nothing works", "No internet and no TV again"),
        (
            "I'm sorry about this. Can you tell me which lights are showing on the router?",
            "Let me check the network status for your area. Could you confirm your postcode?",
            "Thanks for reporting it. Have you restarted the router since it went down?",
        ),
        ("The internet light is blinking red.", "I'm in {city}, near the station. Postcode is on the account.", "Yes, restarted it twice, no change."),
        (
            "There's a confirmed outage in {city} (incident {incident}) caused by a damaged fibre cable. Engineers are on site and expect service back by 6pm. I've added a credit of {credit} for the downtime.",
            "The outage has been resolved — please restart your router and let us know if you're still offline.",
            "Service was restored in your area at 14:20. Sorry for the disruption; a {credit} credit has been applied.",
        ),
        ("Customer affected by outage in {city} (incident {incident})", "Caller reported loss of service, area outage confirmed", "Customer reporting repeated outages, credit {credit} applied"),
        ("Linked to incident {incident} — fibre cut near the {city} exchange.", "Third outage this month for this customer, escalated to network team."),
        (3, 35, 42, 20),
    ),
    _Topic(
        "router", "Technical Support", 10, "Router problems",
        ("Router keeps dropping connection", "WiFi disconnects every few minutes", "Problem with my {router}"),
        ("the router dropping the connection", "the WiFi problems"),
        (
            "My router keeps dropping the connection every 10-15 minutes. It's a {router}. I've already restarted it several times. Video calls are impossible.",
            "The WiFi signal is fine in the living room but drops completely upstairs, and the router reboots itself at night.",
            "Since the firmware update on {date}, my {router} loses internet every evening around 8pm.",
        ),
        ("My router keeps dropping the connection", "The WiFi disconnects every few minutes", "My {router} keeps restarting by itself"),
        (
            "Sorry to hear that. Let's power-cycle it: unplug it for 30 seconds, then plug it back in. Does the internet light go solid white?",
            "Can you tell me whether it drops on wired devices too, or only on WiFi?",
            "I'm running a line test now. Is the router near anything like a microwave or a cordless phone base?",
        ),
        ("Unplugged it, it came back, and now the light is white.", "Only WiFi, the laptop on the cable is fine.", "It's in a cabinet next to the TV."),
        (
            "The line test shows your router is on old firmware. I've pushed an update remotely; it'll restart once. That should stop the drop-outs.",
            "I've moved your WiFi to a less congested channel and split the 2.4/5 GHz bands. Let me know if it drops again in the next 24 hours.",
            "Your {router} is faulty — a replacement is on its way (order {order}) and should arrive in 2 working days.",
        ),
        ("Customer's {router} dropping connection, firmware updated remotely", "WiFi drop-outs, channel changed", "Router faulty, replacement ordered ({order})"),
        ("Line test clean; issue is on the WiFi side. Suggested a mesh extender.", "Replacement {router} ordered ({order}) — old unit to be returned."),
    ),
    _Topic(
        "slow_speed", "Technical Support", 6, "Slow internet",
        ("Internet much slower than advertised", "Speed problems on {plan}", "Slow internet in the evenings"),
        ("the slow internet", "the speed problems"),
        (
            "I'm paying for {plan} but speed tests show around 40 Mbps, even with a cable plugged in. This has been going on for a week.",
            "Every evening between 7 and 11 the internet becomes unusable, buffering on everything. Mornings are fine.",
            "My upload speed dropped to almost nothing on {date}. I can't send files for work.",
        ),
        ("I'm getting 40 Mbps on {plan}", "The internet crawls every evening", "My upload speed is almost zero"),
        (
            "Thanks for the details. Could you run a speed test on a wired connection and share the result?",
            "Are many devices connected at the same time in the evening?",
            "I'll run a line check. Can you tell me the model of the router you're using?",
        ),
        ("Wired test: 38 down, 4 up.", "Just a laptop and a TV, nothing unusual.", "It's the {router} you sent me."),
        (
            "I found a provisioning error — your line was still capped at the old speed. Fixed now; please restart the router and re-test.",
            "There's congestion on the {city} cabinet in the evenings; an upgrade is scheduled for {eta}. I've applied a {credit} credit in the meantime.",
            "I've booked an engineer visit for {eta} between 8am and 12pm to check the line.",
        ),
        ("Customer on {plan} getting 40 Mbps, provisioning error fixed", "Evening slowdowns in {city}, cabinet congestion", "Engineer visit booked for {eta}"),
        ("Profile mismatch: line provisioned at legacy speed.", "Engineer visit {ticket} booked for {eta}."),
    ),
    _Topic(
        "two_factor", "Technical Support", 5, "Verification code",
        ("Not receiving the verification code", "2FA code never arrives", "Can't verify my login"),
        ("the verification code", "the 2FA login problem"),
        (
            "Every time I try to log in, the app asks for a code by text but nothing arrives. I've waited 20 minutes and tried again.",
            "I got a new phone and my authenticator app is gone, so I can't log in anymore.",
            "The verification code arrives but the app says it has expired straight away.",
        ),
        ("The verification code never arrives", "New phone, and I lost my authenticator app", "The code says expired straight away"),
        (
            "I can help. Can you confirm the mobile number that should be receiving the codes?",
            "For security I'll need to verify your identity. Could you confirm the amount of your last payment?",
            "Is the time on your phone set automatically?",
        ),
        ("It's the number ending in {phone_tail}.", "The last payment was {amount}.", "Oh, it was set manually. I've changed it now."),
        (
            "The number on file was missing a digit. I've corrected it; please try logging in again.",
            "I've reset two-factor authentication on your account. Next time you log in you'll be asked to set it up again.",
            "That was it — with the phone clock in sync, the codes will work.",
        ),
        ("Customer not receiving 2FA codes, phone number corrected", "2FA reset after new phone", "Expired-code issue caused by phone clock"),
        ("2FA reset after identity check (last payment amount).", "SMS gateway delays reported — incident {incident}."),
    ),
    _Topic(
        "mobile_data", "Technical Support", 4, "Mobile data",
        ("No mobile data after SIM swap", "Mobile data not working", "eSIM activation problem"),
        ("the mobile data problem", "the SIM activation"),
        (
            "I switched to the new SIM you sent me yesterday. Calls work but mobile data doesn't.",
            "I'm abroad in {travel} and my data isn't working even though roaming is on. I bought the travel pass.",
            "I tried to activate the eSIM with the QR code but it says 'Unable to complete cellular plan change'.",
        ),
        ("Mobile data stopped working after the SIM swap", "No data while roaming in {travel}", "The eSIM won't activate"),
        (
            "Let's check a couple of settings. Is mobile data switched on, and is the APN set to 'internet'?",
            "Can you restart the phone and check that roaming is enabled in Settings?",
            "Which phone model are you using?",
        ),
        ("Mobile data is on, I didn't know about the APN.", "Restarted, roaming is on, still nothing.", "It's an iPhone 14."),
        (
            "I've re-sent the network settings to your phone by SMS — open the message, install them, then restart.",
            "Your travel pass hadn't activated because of a billing hold. It's active now and data should work within 10 minutes.",
            "I've generated a new eSIM QR code and emailed it. Delete the failed eSIM profile first, then scan the new one.",
        ),
        ("Customer without mobile data after SIM swap, APN fixed", "Roaming data not working in {travel}, travel pass activated", "eSIM activation failed, new QR code issued"),
        ("Travel pass stuck in billing hold, released manually.", "eSIM profile {ticket} re-issued."),
    ),
    _Topic(
        "thank_you", None, 3, "Thank you",
        ("Thank you!", "Great service from {prev_agent}", "Just a quick thanks"),
        ("the help they got",),
        (
            "Just wanted to say thank you to {prev_agent}, who helped me {when}. They were patient and sorted everything out in one go. Great service!",
            "I know you mostly hear complaints, so: thank you! The engineer was on time and really friendly.",
            "Everything has been working perfectly since the fix. Thanks to the whole team.",
        ),
        ("Just wanted to say thanks for the help!", "Thanks {prev_agent}, everything works now", "Great service today, thank you"),
        ("Thank you!",),
        ("Thanks again.",),
        (
            "Thank you so much for taking the time to write, {first}! I'll pass this on to {prev_agent}.",
            "That's lovely to hear — thanks for letting us know!",
        ),
        ("Customer called to say thanks to {prev_agent}",),
        ("Passed kudos on to {prev_agent}'s team lead.",),
        (50, 48, 2, 0),
    ),
)
_TOPIC_CUM = []
_acc = 0
for _t in _TOPICS:
    _acc += _t.weight
    _TOPIC_CUM.append(_acc)
del _acc, _t

_EN: dict[str, Any] = {
    "greet_in": ("Hi,", "Hello,", "Hi there,", "Good morning,", "To whom it may concern,", "Hi {team} team,"),
    "signoff_in": ("Thanks,\n{first}", "Best regards,\n{name}", "Cheers,\n{first}", "Thank you,\n{name}", "{first}", "Thanks,\n{first}\n\nSent from my iPhone"),
    "greet_out": ("Hi {first},", "Hello {first},", "Dear {first},"),
    "signoff_out": ("Best regards,\n{agent_full}\n{team} | " + COMPANY, "Kind regards,\n{agent_full}\n{team} team", "Thanks,\n{agent}"),
    "ask": (  # generic follow-up questions (topic-specific ones live on the topic); "info" answers them in order
        "Thanks. Could you also confirm the account holder's full name?",
        "Got it. What's the best number to reach you on if we get cut off?",
        "And is this affecting anyone else in the household?",
        "Thanks for that. Just one more thing — when did this start?",
    ),
    "info": ("Sure, it's {name}.", "This number is fine.", "Just me as far as I know.", "It started around {date}."),
    "thanks": (
        "Thanks so much, that sorted it!",
        "Perfect, thank you for the quick help.",
        "Got it, really appreciate it.",
        "That worked. Thanks {agent}!",
        "Great, thanks for sorting this out so fast.",
    ),
    "still": (
        "I tried that and it's still not working.",
        "Still the same problem, unfortunately.",
        "No change on my end, I'm afraid.",
        "That didn't help, it happened again this morning.",
    ),
    "not_yet": (
        "I haven't received anything yet.",
        "I still don't see the change on my account.",
        "Nothing in my inbox yet, I'm afraid.",
    ),
    "nudge": (
        "Any update on this?",
        "Following up — I still haven't heard back.",
        "Hello? Is anyone looking at this?",
        "It's been a while, can someone please get back to me?",
    ),
    "hold": (
        "I've escalated this to our {escalation} team. I'll follow up with you by {eta}.",
        "I'm waiting on confirmation from {escalation}; I'll get back to you by {eta} at the latest.",
        "I've set a reminder to check on this on {eta} and will update you then.",
    ),
    "close": (
        "Glad I could help! Is there anything else I can do for you today?",
        "You're welcome, {first}. Have a great rest of your day!",
        "Happy to help. I'll close this out now, but just reply if anything comes up.",
    ),
    "ack": (
        "Thanks, let me check that for you — one moment.",
        "Give me a minute while I pull up your account.",
        "Thanks for your patience, I'm still looking into it.",
        "Bear with me, I'm checking with a colleague.",
    ),
    "ok": ("Sure, no problem.", "ok", "Thanks, I'll wait.", "Sure.", "👍"),
    "chat_hello": ("Hi {first}, I'm {agent}. ", "Hello {first}, thanks for waiting! ", "Hi {first}! "),
    "chat_open": ("Hi, ", "Hello, ", "", "Hey, ", "Hi there! "),
    "followup": {
        "email": ("I emailed about this {when} and haven't heard back.", "Following up on my email from {when}."),
        "phone": ("I called {when} about this and was told someone would call me back.", "I spoke to someone on the phone {when}."),
        "chat": ("I was on the chat {when} but got disconnected.", "I chatted with one of your agents {when}."),
        "sms": ("I texted you about this {when}.",),
        "whatsapp": ("I messaged you on WhatsApp {when}.",),
    },
    "callback_ask": "I can't stay on the line right now, can someone call me back?",
    "callback_ok": "Of course, we'll call you back {callback}.",
    "escalate": "I'm escalating this to our {escalation} team.",
    "vm_in": "Hi, this is {first} calling about {phrase}. Please call me back on this number.",
    "vm_out": "Hi {first}, this is {agent} from " + COMPANY + " returning your call about {phrase}. Please call us back on " + COMPANY_PHONE + ", reference {ticket}.",
    "hello_out": "Hi {first}, it's {agent} from " + COMPANY + ", calling back about {phrase}.",
    "glad": "Oh great, thanks for calling back.",
    "wrote": "On {wd}, {d} {mon} {y} at {hm}, {who} <{addr}> wrote:",
    "wd": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "mon": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "month": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "date": "{mon} {d}",
    "today": "earlier today",
    "yesterday": "yesterday",
    "days_ago": "{n} days ago",
}

# --------------------------------------------------------------------------------------------------------------
# A few customers write in their own language; the desk answers in it.
# --------------------------------------------------------------------------------------------------------------

_ES: dict[str, Any] = {
    "topics": {
        "double_charge": ("Cobro duplicado", ("Me habéis cobrado {amount} dos veces el {date}.", "Tengo dos cargos de {amount} en la tarjeta acabada en {last4}.")),
        "refund": ("Reembolso pendiente del pedido {order}", ("Devolví el pedido {order} hace {days} días y todavía no tengo el reembolso.", "¿Cuándo recibiré el reembolso de {amount}?")),
        "billing_dispute": ("Factura más alta de lo normal", ("Mi factura de {month} es de {amount}, mucho más de lo habitual. ¿Por qué?", "Hay un cargo en la factura {invoice} que no reconozco.")),
        "payment_failed": ("Pago rechazado", ("Mi pago de {amount} ha sido rechazado pero la tarjeta funciona bien.", "La domiciliación ha fallado este mes y no sé por qué.")),
        "plan_upgrade": ("Cambio a {plan_new}", ("Quiero cambiarme a {plan_new}. ¿Cuánto costaría?", "¿Puedo pasar de {plan} a {plan_new} sin permanencia?")),
        "cancellation": ("Solicitud de baja", ("Quiero dar de baja el servicio, me mudo el {eta}.", "Quiero cancelar mi cuenta, el precio ha subido demasiado.")),
        "delivery_delay": ("Pedido {order} sin entregar", ("Mi pedido {order} tenía que llegar hace {days} días y no ha llegado.", "El pedido {order} aparece como entregado pero no lo tengo.")),
        "invoice_copy": ("Copia de la factura {invoice}", ("¿Me podéis enviar una copia de la factura {invoice}?", "Necesito las facturas de los últimos tres meses.")),
        "password_reset": ("No puedo acceder a mi cuenta", ("No me llega el correo para restablecer la contraseña.", "Mi cuenta está bloqueada y no puedo entrar.")),
        "outage": ("Sin internet en {city}", ("No tengo internet desde esta mañana. ¿Hay una avería en {city}?", "Otra vez sin internet ni televisión.")),
        "router": ("El router se desconecta", ("El router se desconecta cada pocos minutos.", "El wifi se corta constantemente desde el {date}.")),
        "slow_speed": ("Internet muy lento", ("Tengo contratado {plan} pero solo llego a 40 Mbps.", "Por las noches internet va lentísimo.")),
        "two_factor": ("No recibo el código de verificación", ("No me llega el código de verificación por SMS.", "He cambiado de móvil y no puedo verificar mi cuenta.")),
        "mobile_data": ("Sin datos móviles", ("Desde que cambié la SIM no tengo datos móviles.", "Estoy en {travel} y los datos no funcionan.")),
        "thank_you": ("¡Gracias!", ("Solo quería dar las gracias por la ayuda de {prev_agent}.", "Todo funciona perfectamente, ¡muchas gracias!")),
    },
    "greet_in": ("Hola:", "Buenos días:", "Hola,"),
    "signoff_in": ("Gracias,\n{first}", "Un saludo,\n{name}", "Saludos,\n{first}"),
    "greet_out": ("Hola {first}:", "Buenos días, {first}:"),
    "signoff_out": ("Un saludo,\n{agent_full}\n{team} | " + COMPANY,),
    "ask": (
        "Siento las molestias. ¿Me puede confirmar su número de cliente?",
        "Gracias por escribirnos. ¿Me confirma el nombre del titular de la cuenta?",
        "Para verificar su identidad, ¿me indica la dirección de facturación?",
    ),
    "info": ("Mi número de cliente es {account}.", "El titular soy yo, {name}.", "La dirección es {street}, {city}."),
    "fix": (
        "Ya está solucionado: he aplicado el cambio en su cuenta, referencia {ticket}.",
        "He tramitado la incidencia y recibirá un abono de {credit} en la próxima factura.",
        "Todo listo, el problema está resuelto. Si vuelve a ocurrir, responda a este mensaje.",
    ),
    "thanks": ("¡Muchas gracias por la ayuda!", "Perfecto, ya funciona. Gracias.", "Genial, gracias {agent}."),
    "still": ("Sigue sin funcionar.", "Lo he probado y nada, el problema continúa."),
    "nudge": ("¿Alguna novedad?", "Sigo esperando respuesta, por favor."),
    "hold": (
        "He escalado el caso a nuestro equipo de {escalation}. Le escribiré antes del {eta}.",
        "Estamos esperando confirmación del departamento correspondiente; le aviso el {eta}.",
    ),
    "close": ("¡De nada, {first}! Que tenga un buen día.", "Me alegro de que esté resuelto. Cierro la consulta."),
    "ack": ("Un momento, lo compruebo.", "Gracias, déjeme revisar su cuenta."),
    "ok": ("Vale, gracias.", "De acuerdo.", "Ok"),
    "chat_hello": ("Hola {first}, soy {agent}. ",),
    "chat_open": ("Hola, ", "Buenas, ", ""),
    "followup": {
        "email": ("Les escribí un correo {when} y no he recibido respuesta.",),
        "phone": ("Llamé {when} y me dijeron que me devolverían la llamada.",),
        "chat": ("Hablé por el chat {when} pero se cortó.",),
        "sms": ("Les envié un SMS {when}.",),
        "whatsapp": ("Les escribí por WhatsApp {when}.",),
    },
    "callback_ask": "Ahora no puedo hablar, ¿me pueden llamar más tarde?",
    "callback_ok": "Claro, le llamamos esta tarde.",
    "escalate": "Voy a pasar el caso al equipo de {escalation}.",
    "vm_in": "Hola, soy {first}, llamo por mi consulta. Por favor, llámenme a este número.",
    "vm_out": "Hola {first}, soy {agent} de " + COMPANY + ". Le devolvemos la llamada; puede llamarnos al " + COMPANY_PHONE + ", referencia {ticket}.",
    "hello_out": "Hola {first}, soy {agent} de " + COMPANY + ", le llamo por su consulta.",
    "glad": "Ah, perfecto, gracias por llamar.",
    "wrote": "El {wd}, {d} {mon} {y} a las {hm}, {who} (<{addr}>) escribió:",
    "wd": ("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
    "mon": ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"),
    "month": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"),
    "date": "{d} de {month}",
    "today": "esta mañana",
    "yesterday": "ayer",
    "days_ago": "hace {n} días",
}

_FR: dict[str, Any] = {
    "topics": {
        "double_charge": ("Prélèvement en double", ("J'ai été prélevé deux fois de {amount} le {date}.", "Je vois deux débits de {amount} sur ma carte se terminant par {last4}.")),
        "refund": ("Remboursement de la commande {order}", ("J'ai renvoyé la commande {order} il y a {days} jours et je n'ai toujours pas été remboursé.", "Quand vais-je recevoir le remboursement de {amount} ?")),
        "billing_dispute": ("Facture anormalement élevée", ("Ma facture de {month} est de {amount}, bien plus que d'habitude. Pourquoi ?", "Il y a des frais sur la facture {invoice} que je ne reconnais pas.")),
        "payment_failed": ("Paiement refusé", ("Mon paiement de {amount} a été refusé alors que ma carte fonctionne.", "Le prélèvement automatique a échoué ce mois-ci.")),
        "plan_upgrade": ("Passage à l'offre {plan_new}", ("Je voudrais passer à l'offre {plan_new}. Combien ça coûte ?", "Est-ce que je peux passer de {plan} à {plan_new} sans engagement ?")),
        "cancellation": ("Résiliation", ("Je souhaite résilier mon abonnement, je déménage le {eta}.", "Je veux résilier, le prix a trop augmenté.")),
        "delivery_delay": ("Commande {order} non livrée", ("Ma commande {order} devait arriver il y a {days} jours et je n'ai rien reçu.", "La commande {order} est indiquée comme livrée mais je ne l'ai pas.")),
        "invoice_copy": ("Copie de la facture {invoice}", ("Pouvez-vous m'envoyer une copie de la facture {invoice} ?", "J'ai besoin des factures des trois derniers mois.")),
        "password_reset": ("Impossible de me connecter", ("Je ne reçois pas l'e-mail de réinitialisation du mot de passe.", "Mon compte est bloqué, je ne peux plus me connecter.")),
        "outage": ("Plus d'internet à {city}", ("Plus d'internet depuis ce matin. Y a-t-il une panne à {city} ?", "Encore une coupure : ni internet ni télé.")),
        "router": ("La box se déconnecte", ("Ma box se déconnecte toutes les dix minutes.", "Le wifi coupe sans arrêt depuis le {date}.")),
        "slow_speed": ("Connexion très lente", ("J'ai l'offre {plan} mais je plafonne à 40 Mbit/s.", "Le soir, internet est inutilisable.")),
        "two_factor": ("Code de vérification non reçu", ("Je ne reçois pas le code de vérification par SMS.", "J'ai changé de téléphone et je ne peux plus valider la connexion.")),
        "mobile_data": ("Pas de données mobiles", ("Depuis le changement de carte SIM, je n'ai plus de données mobiles.", "Je suis en voyage en {travel} et les données ne marchent pas.")),
        "thank_you": ("Merci !", ("Je voulais simplement remercier {prev_agent} pour son aide.", "Tout fonctionne parfaitement, merci beaucoup !")),
    },
    "greet_in": ("Bonjour,", "Bonjour Madame, Monsieur,"),
    "signoff_in": ("Merci,\n{first}", "Cordialement,\n{name}", "Bien à vous,\n{name}"),
    "greet_out": ("Bonjour {first},",),
    "signoff_out": ("Cordialement,\n{agent_full}\n{team} | " + COMPANY,),
    "ask": (
        "Je suis désolé(e) pour ce désagrément. Pouvez-vous me confirmer votre numéro client ?",
        "Merci pour votre message. Pouvez-vous me confirmer le nom du titulaire du compte ?",
        "Pour vérifier votre identité, pouvez-vous m'indiquer votre adresse de facturation ?",
    ),
    "info": ("Mon numéro client est {account}.", "C'est moi, {name}.", "J'habite au {street}, {city}."),
    "fix": (
        "C'est réglé : j'ai appliqué la correction sur votre compte, référence {ticket}.",
        "J'ai traité votre demande ; un avoir de {credit} apparaîtra sur votre prochaine facture.",
        "Tout est en ordre, le problème est résolu. N'hésitez pas à répondre si cela se reproduit.",
    ),
    "thanks": ("Merci beaucoup pour votre aide !", "Parfait, ça marche. Merci.", "Super, merci {agent} !"),
    "still": ("Ça ne marche toujours pas.", "J'ai essayé, mais le problème persiste."),
    "nudge": ("Avez-vous du nouveau ?", "Je n'ai toujours pas de réponse, merci de me recontacter."),
    "hold": (
        "J'ai transmis votre dossier à notre équipe {escalation}. Je reviens vers vous d'ici le {eta}.",
        "Nous attendons une confirmation du service concerné ; je vous tiens informé(e) le {eta}.",
    ),
    "close": ("Avec plaisir, {first} ! Bonne journée.", "Ravi(e) que ce soit réglé. Je clôture la demande."),
    "ack": ("Un instant, je vérifie.", "Merci, je consulte votre compte."),
    "ok": ("D'accord, merci.", "Ok", "Très bien."),
    "chat_hello": ("Bonjour {first}, je m'appelle {agent}. ",),
    "chat_open": ("Bonjour, ", ""),
    "followup": {
        "email": ("Je vous ai envoyé un e-mail {when} et je n'ai pas eu de réponse.",),
        "phone": ("J'ai appelé {when} et on m'a dit qu'on me rappellerait.",),
        "chat": ("J'ai discuté sur le chat {when} mais la conversation a coupé.",),
        "sms": ("Je vous ai envoyé un SMS {when}.",),
        "whatsapp": ("Je vous ai écrit sur WhatsApp {when}.",),
    },
    "callback_ask": "Je ne peux pas rester en ligne, pouvez-vous me rappeler ?",
    "callback_ok": "Bien sûr, nous vous rappelons cet après-midi.",
    "escalate": "Je transmets votre dossier à l'équipe {escalation}.",
    "vm_in": "Bonjour, c'est {first}, j'appelle au sujet de ma demande. Merci de me rappeler à ce numéro.",
    "vm_out": "Bonjour {first}, ici {agent} de chez " + COMPANY + ". Je vous rappelle au sujet de votre demande ; vous pouvez nous joindre au " + COMPANY_PHONE + ", référence {ticket}.",
    "hello_out": "Bonjour {first}, {agent} de chez " + COMPANY + ", je vous rappelle au sujet de votre demande.",
    "glad": "Ah, merci de me rappeler.",
    "wrote": "Le {wd} {d} {mon} {y} à {hm}, {who} <{addr}> a écrit :",
    "wd": ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."),
    "mon": ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."),
    "month": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"),
    "date": "{d} {month}",
    "today": "ce matin",
    "yesterday": "hier",
    "days_ago": "il y a {n} jours",
}

_DE: dict[str, Any] = {
    "topics": {
        "double_charge": ("Doppelte Abbuchung", ("Mir wurden am {date} zweimal {amount} abgebucht.", "Auf meiner Karte mit der Endung {last4} sehe ich zwei Abbuchungen über {amount}.")),
        "refund": ("Erstattung für Bestellung {order}", ("Ich habe die Bestellung {order} vor {days} Tagen zurückgeschickt und noch keine Erstattung erhalten.", "Wann bekomme ich die {amount} zurück?")),
        "billing_dispute": ("Rechnung zu hoch", ("Meine Rechnung für {month} beträgt {amount}, viel mehr als sonst. Warum?", "Auf der Rechnung {invoice} ist eine Gebühr, die ich nicht kenne.")),
        "payment_failed": ("Zahlung abgelehnt", ("Meine Zahlung über {amount} wurde abgelehnt, obwohl die Karte funktioniert.", "Die Lastschrift ist diesen Monat fehlgeschlagen.")),
        "plan_upgrade": ("Wechsel zu {plan_new}", ("Ich möchte zu {plan_new} wechseln. Was kostet das?", "Kann ich von {plan} zu {plan_new} wechseln, ohne neue Vertragslaufzeit?")),
        "cancellation": ("Kündigung", ("Ich möchte meinen Vertrag kündigen, ich ziehe am {eta} um.", "Bitte kündigen Sie mein Konto, der Preis ist zu stark gestiegen.")),
        "delivery_delay": ("Bestellung {order} nicht angekommen", ("Meine Bestellung {order} sollte vor {days} Tagen ankommen, ist aber immer noch nicht da.", "Die Bestellung {order} wird als zugestellt angezeigt, ich habe sie aber nicht.")),
        "invoice_copy": ("Kopie der Rechnung {invoice}", ("Können Sie mir bitte eine Kopie der Rechnung {invoice} schicken?", "Ich brauche die Rechnungen der letzten drei Monate.")),
        "password_reset": ("Anmeldung nicht möglich", ("Die E-Mail zum Zurücksetzen des Passworts kommt nicht an.", "Mein Konto ist gesperrt, ich komme nicht mehr rein.")),
        "outage": ("Kein Internet in {city}", ("Seit heute früh habe ich kein Internet. Gibt es eine Störung in {city}?", "Schon wieder kein Internet und kein Fernsehen.")),
        "router": ("Router verliert Verbindung", ("Der Router verliert alle paar Minuten die Verbindung.", "Das WLAN bricht seit dem {date} ständig ab.")),
        "slow_speed": ("Internet sehr langsam", ("Ich habe {plan} gebucht, komme aber nur auf 40 Mbit/s.", "Abends ist das Internet kaum nutzbar.")),
        "two_factor": ("Bestätigungscode kommt nicht an", ("Der Bestätigungscode per SMS kommt nicht an.", "Ich habe ein neues Handy und kann mich nicht mehr verifizieren.")),
        "mobile_data": ("Keine mobilen Daten", ("Seit dem SIM-Tausch habe ich keine mobilen Daten mehr.", "Ich bin gerade in {travel} und die Daten funktionieren nicht.")),
        "thank_you": ("Vielen Dank!", ("Ich wollte mich nur bei {prev_agent} für die Hilfe bedanken.", "Alles funktioniert wieder, vielen Dank!")),
    },
    "greet_in": ("Hallo,", "Guten Tag,", "Sehr geehrte Damen und Herren,"),
    "signoff_in": ("Danke,\n{first}", "Viele Grüße\n{name}", "Mit freundlichen Grüßen\n{name}"),
    "greet_out": ("Hallo {first},", "Guten Tag {first},"),
    "signoff_out": ("Viele Grüße\n{agent_full}\n{team} | " + COMPANY,),
    "ask": (
        "Das tut mir leid. Können Sie mir bitte Ihre Kundennummer nennen?",
        "Danke für Ihre Nachricht. Auf wen läuft der Vertrag?",
        "Zur Verifizierung: Wie lautet Ihre Rechnungsadresse?",
    ),
    "info": ("Meine Kundennummer ist {account}.", "Auf mich, {name}.", "Die Adresse ist {street}, {city}."),
    "fix": (
        "Das ist erledigt: Ich habe die Korrektur in Ihrem Konto vorgenommen, Vorgangsnummer {ticket}.",
        "Ich habe den Fall bearbeitet; Sie erhalten eine Gutschrift über {credit} auf der nächsten Rechnung.",
        "Alles erledigt, das Problem ist behoben. Falls es wieder auftritt, antworten Sie einfach auf diese Nachricht.",
    ),
    "thanks": ("Vielen Dank für die Hilfe!", "Super, es funktioniert. Danke.", "Prima, danke {agent}!"),
    "still": ("Es funktioniert immer noch nicht.", "Habe ich probiert, das Problem besteht weiterhin."),
    "nudge": ("Gibt es etwas Neues?", "Ich warte immer noch auf eine Antwort."),
    "hold": (
        "Ich habe den Fall an unser Team {escalation} weitergegeben und melde mich bis {eta} bei Ihnen.",
        "Wir warten noch auf eine Rückmeldung der Fachabteilung; ich melde mich am {eta}.",
    ),
    "close": ("Gern geschehen, {first}! Einen schönen Tag noch.", "Schön, dass es gelöst ist. Ich schließe die Anfrage."),
    "ack": ("Einen Moment, ich prüfe das.", "Danke, ich schaue mir Ihr Konto an."),
    "ok": ("Alles klar, danke.", "Ok", "Gut."),
    "chat_hello": ("Hallo {first}, hier ist {agent}. ",),
    "chat_open": ("Hallo, ", "Guten Tag, ", ""),
    "followup": {
        "email": ("Ich habe Ihnen {when} eine E-Mail geschrieben und keine Antwort bekommen.",),
        "phone": ("Ich habe {when} angerufen und man sagte mir, ich werde zurückgerufen.",),
        "chat": ("Ich war {when} im Chat, aber die Verbindung ist abgebrochen.",),
        "sms": ("Ich habe Ihnen {when} eine SMS geschickt.",),
        "whatsapp": ("Ich habe Ihnen {when} auf WhatsApp geschrieben.",),
    },
    "callback_ask": "Ich kann gerade nicht, können Sie mich später zurückrufen?",
    "callback_ok": "Natürlich, wir rufen Sie heute Nachmittag zurück.",
    "escalate": "Ich gebe den Fall an das Team {escalation} weiter.",
    "vm_in": "Hallo, hier ist {first}, ich rufe wegen meiner Anfrage an. Bitte rufen Sie mich unter dieser Nummer zurück.",
    "vm_out": "Hallo {first}, hier ist {agent} von " + COMPANY + ". Wir rufen wegen Ihrer Anfrage zurück; Sie erreichen uns unter " + COMPANY_PHONE + ", Vorgangsnummer {ticket}.",
    "hello_out": "Hallo {first}, hier ist {agent} von " + COMPANY + ", ich rufe wegen Ihrer Anfrage zurück.",
    "glad": "Ah, danke für den Rückruf.",
    "wrote": "Am {wd}, {d}. {mon} {y} um {hm} schrieb {who} <{addr}>:",
    "wd": ("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."),
    "mon": ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.", "Okt.", "Nov.", "Dez."),
    "month": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"),
    "date": "{d}. {month}",
    "today": "heute früh",
    "yesterday": "gestern",
    "days_ago": "vor {n} Tagen",
}
_LANG = {"es": _ES, "fr": _FR, "de": _DE}

_PLANS = ("Fiber 100", "Fiber 300", "Fiber 500", "Fiber 1000", "Mobile 20GB", "Mobile Unlimited", "TV + Fiber 300")
_UPGRADES = {
    "Fiber 100": "Fiber 300", "Fiber 300": "Fiber 1000", "Fiber 500": "Fiber 1000", "Fiber 1000": "Fiber 2000",
    "Mobile 20GB": "Mobile Unlimited", "Mobile Unlimited": "Mobile Unlimited Family", "TV + Fiber 300": "TV + Fiber 1000",
}
_ROUTERS = ("HomeHub 4", "HomeHub 5", "AX1800 router", "Ashgrove SmartBox 2", "Nova mesh router")
_TRAVEL = ("Portugal", "Mexico", "Japan", "Italy", "Canada", "Thailand", "Greece")

# --------------------------------------------------------------------------------------------------------------
# Conversation shapes: steps are "c_*" (customer), "a_*" (agent); notes are inserted afterwards
# --------------------------------------------------------------------------------------------------------------

_EMAIL_ARCS = {
    "closed": (
        (("c_open", "a_fix"), 2),
        (("c_open", "a_ask", "c_info", "a_fix"), 4),
        (("c_open", "a_ask", "c_info", "a_fix", "c_thanks"), 5),
        (("c_open", "a_ask", "c_info", "a_fix", "c_still", "a_fix2", "c_thanks"), 3),
        (("c_open", "a_fix", "c_thanks"), 2),
        (("c_open", "c_nudge", "a_ask", "c_info", "a_fix", "c_thanks"), 2),
        (("c_open", "a_ask", "c_info", "a_ask2", "c_info2", "a_fix", "c_thanks", "a_close"), 2),
    ),
    "open": (
        (("c_open",), 3),
        (("c_open", "a_ask", "c_info"), 4),
        (("c_open", "a_ask", "c_info", "a_fix", "c_still"), 2),
        (("c_open", "c_nudge"), 1),
    ),
    "open_unassigned": ((("c_open",), 6), (("c_open", "c_nudge"), 2), (("c_open", "a_ask", "c_info"), 1)),
    "pending": (
        (("c_open", "a_ask"), 4),
        (("c_open", "a_ask", "c_info", "a_fix"), 4),
        (("c_open", "a_fix"), 2),
        (("c_open", "a_ask", "c_info", "a_ask2"), 1),
    ),
    "snoozed": ((("c_open", "a_ask", "c_info", "a_hold"), 4), (("c_open", "a_hold"), 2)),
}
_TEXT_ARCS = {  # sms / whatsapp
    "closed": (
        (("c_open", "a_ask", "c_info", "a_fix", "c_thanks"), 5),
        (("c_open", "a_fix", "c_thanks"), 2),
        (("c_open", "a_ask", "c_info", "a_ask2", "c_info2", "a_fix", "c_thanks"), 3),
        (("c_open", "a_ask", "c_info", "a_fix", "c_still", "a_fix2", "c_thanks", "a_close"), 2),
    ),
    "open": ((("c_open",), 2), (("c_open", "a_ask", "c_info"), 4), (("c_open", "a_ask", "c_info", "a_fix", "c_still"), 2)),
    "open_unassigned": ((("c_open",), 5), (("c_open", "c_nudge"), 3)),
    "pending": ((("c_open", "a_ask"), 3), (("c_open", "a_ask", "c_info", "a_fix"), 4)),
    "snoozed": ((("c_open", "a_ask", "c_info", "a_hold"), 1),),
}
# phone: a list of calls (direction, disposition); "follow" arcs may begin with our call-back
_PHONE_ARCS = {
    "closed": (
        ((("in", "resolved"),), 6),
        ((("in", "callback-requested"), ("out", "resolved")), 2),
        ((("in", "escalated"), ("out", "resolved")), 1),
        ((("in", "transferred"), ("in", "resolved")), 1),
    ),
    "closed_follow": (
        ((("out", "resolved"),), 3),
        ((("out", "no-answer"), ("out", "resolved")), 1),
        ((("out", "voicemail"), ("in", "resolved")), 1),
        ((("in", "resolved"),), 2),
    ),
    "open": (
        ((("in", "callback-requested"),), 3),
        ((("in", "voicemail"),), 2),
        ((("in", "escalated"),), 1),
        ((("in", "callback-requested"), ("out", "no-answer"), ("in", "voicemail")), 1),
    ),
    "open_follow": (((("out", "no-answer"), ("in", "callback-requested")), 1), ((("in", "voicemail"),), 1)),
    "pending": (((("in", "callback-requested"), ("out", "voicemail")), 3), ((("in", "escalated"), ("out", "voicemail")), 1)),
    "pending_follow": (((("out", "voicemail"),), 2), ((("out", "no-answer"),), 1)),
    "snoozed": (((("in", "escalated"),), 2), ((("in", "callback-requested"),), 1)),
}
_CALLBACK_WHEN = ("this afternoon", "tomorrow morning", "after 5pm", "in an hour", "before noon tomorrow")
_CALL_ABOUT = ("Customer called about {phrase}", "Caller asked about {phrase}", "Call re: {phrase}", "Customer phoned in about {phrase}")
_CALL_SECONDS = {
    "resolved": (180, 1200), "callback-requested": (60, 300), "escalated": (300, 1500), "transferred": (90, 400),
    "voicemail": (20, 90), "no-answer": (0, 0),
}
_DISPOSITION_TEXT = {
    ("in", "resolved"): ("resolved on the call", "fixed while the customer was on the line", "resolved, customer happy"),
    ("out", "resolved"): ("resolved on the call-back", "customer confirmed it's fixed"),
    ("in", "callback-requested"): ("customer asked for a call-back {callback}",),
    ("in", "escalated"): ("escalated to {escalation}",),
    ("in", "transferred"): ("transferred to {escalation}",),
    ("in", "voicemail"): ("customer left a voicemail",),
    ("out", "voicemail"): ("left a voicemail asking the customer to call back",),
    ("out", "no-answer"): ("no answer, will retry",),
}


def _cum(weights: Any) -> list[float]:
    out: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w
        out.append(acc)
    return out


# (shapes, cumulative weights) per key, so a draw is one bisect
_ARC_TABLES = {
    id(table): {key: ([a for a, _ in arcs], _cum(w for _, w in arcs)) for key, arcs in table.items()}
    for table in (_EMAIL_ARCS, _TEXT_ARCS, _PHONE_ARCS)
}


def _arc(rng: random.Random, table: dict[str, Any], key: str) -> Any:
    shapes, cum = _ARC_TABLES[id(table)][key]
    return rng.choices(shapes, cum_weights=cum)[0]


_REQUESTS = {"plan_upgrade", "invoice_copy", "cancellation", "thank_you"}  # nothing is "broken" in these
_THANKS_ARCS = (("c_open", "a_fix"), ("c_open", "a_fix", "c_thanks"))
# which template list a step draws from: per topic (English), else the language's generic lines
_TOPIC_STEP = {"c_info": "info", "a_ask": "ask", "a_fix": "fix", "a_fix2": "fix"}
_STEP_KEY = {
    "c_info": "info", "c_info2": "info", "c_thanks": "thanks", "c_still": "still", "c_nudge": "nudge", "c_ok": "ok",
    "a_ask": "ask", "a_ask2": "ask", "a_fix": "fix", "a_fix2": "fix", "a_hold": "hold", "a_close": "close", "a_ack": "ack",
}


def _ascii(text: str) -> str:
    repl = {"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "ı": "i", "æ": "ae", "đ": "d", "Đ": "D"}
    text = "".join(repl.get(ch, ch) for ch in text)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _lower_first(text: str) -> str:
    if not text or text.startswith(("I ", "I'")) or text[:2].isupper():
        return text
    return text[0].lower() + text[1:]


def _segments(text: str) -> int:
    single, multi = (160, 153) if text.isascii() else (70, 67)
    n = len(text)
    return 1 if n <= single else -(-n // multi)


class _Random(random.Random):
    """`random.Random` with cheaper single draws (one `random()` each); just as deterministic per seed."""

    def choice(self, seq: Any) -> Any:
        return seq[int(self.random() * len(seq))]

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        if stop is None:
            start, stop = 0, start
        return start + int(self.random() * (stop - start))

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def choices(self, population: Any, weights: Any = None, *, cum_weights: Any = None, k: int = 1) -> list[Any]:
        if k != 1:
            return super().choices(population, weights, cum_weights=cum_weights, k=k)
        if cum_weights is None:
            if weights is None:
                return [population[int(self.random() * len(population))]]
            cum_weights = _cum(weights)
        return [population[bisect_right(cum_weights, self.random() * cum_weights[-1])]]


class _Customer:
    __slots__ = ("row", "country", "lang", "first", "name", "email", "phone", "whatsapp", "chat", "channels", "weight",
                 "account", "street", "city", "company", "first_contact", "last_contact", "had_cancellation")


class _Generator:
    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = _Random(seed)
        self.now = now
        self.teams: list[Row] = []
        self.agents: list[Row] = []
        self.agent_teams: list[Row] = []
        self.customers: list[_Customer] = []
        self.identities: list[Row] = []
        self.conversations: list[Row] = []
        self.interactions: list[Row] = []
        self.team_id: dict[str, str] = {}
        self.team_name: dict[str, str] = {}
        self.agent_by_id: dict[str, Row] = {}
        self.team_agents: dict[str, list[str]] = {}  # team id -> agent ids who take conversations
        self.used: set[tuple[str, str]] = set()
        self.pick_tables: dict[tuple[str, str | None], tuple[list[str], list[float]]] = {}
        self.ask_idx: int | None = None  # which question the agent just asked, so the answer fits
        self.current_prev = ""  # the channel the current follow-up conversation follows

    # ---- basics -------------------------------------------------------------------------------------------
    def new_id(self) -> str:
        x = self.rng.getrandbits(128)
        x = (x & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
        x = (x & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
        return f"{x:032x}"

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def ago(self, seconds: float) -> datetime:
        return self.now - timedelta(seconds=seconds)

    def run(self) -> DemoData:
        self.make_staff()
        self.make_customers()
        self.make_conversations()
        self.assign()
        for conv in self.conversations:
            self.make_interactions(conv)
        self.breach()
        self.finish_customers()
        self.rate_closed()  # last: its draws leave everything generated before it as it was
        demo_id = self.agents[0]["id"]
        for conv in self.conversations:
            for key in [k for k in conv if k.startswith("_")]:
                del conv[key]
        return DemoData(
            teams=self.teams,
            agents=self.agents,
            agent_teams=self.agent_teams,
            customers=[c.row for c in self.customers],
            identities=self.identities,
            conversations=self.conversations,
            interactions=self.interactions,
            demo_agent_id=demo_id,
        )

    # ---- staff --------------------------------------------------------------------------------------------
    def make_staff(self) -> None:
        rng = self.rng
        for name in _TEAMS:
            row = {"id": self.new_id(), "name": name}
            self.teams.append(row)
            self.team_id[name] = row["id"]
            self.team_name[row["id"]] = name
            self.team_agents[row["id"]] = []
        for name, local, role, teams in _AGENTS:
            row = {
                "id": self.new_id(),
                "name": name,
                "email": f"{local}@demo.agentdesk.test",
                "role": role,
                "created_at": self.ago(rng.uniform(200, 1100) * _DAY),
            }
            self.agents.append(row)
            self.agent_by_id[row["id"]] = row
            for team in teams:
                self.agent_teams.append({"agent_id": row["id"], "team_id": self.team_id[team]})
                if role != "admin":
                    self.team_agents[self.team_id[team]].append(row["id"])
        self.demo_id = self.agents[0]["id"]
        self.supervisor = next(a for a in self.agents if a["role"] == "supervisor")

    # ---- customers ----------------------------------------------------------------------------------------
    def person(self) -> tuple[str, str, str, str]:
        """(country, language, first name, last name)"""
        rng = self.rng
        country = rng.choices(("US", "GB", "AU", "DE", "FR", "ES"), (55, 20, 4, 8, 7, 6))[0]
        lang = "en"
        if country == "US":
            r = rng.random()
            if r < 0.18:
                first, last = rng.choice(_HISPANIC_FIRST), rng.choice(_HISPANIC_LAST)
                if rng.random() < 0.2:
                    lang = "es"
            elif r < 0.36:
                firsts, lasts = rng.choice(_DIASPORA)
                first, last = rng.choice(firsts), rng.choice(lasts)
            else:
                first, last = rng.choice(_US_FIRST), rng.choice(_US_LAST)
        elif country == "GB":
            if rng.random() < 0.2:
                firsts, lasts = rng.choice(_DIASPORA)
                first, last = rng.choice(firsts), rng.choice(lasts)
            else:
                first, last = rng.choice(_GB_FIRST), rng.choice(_GB_LAST)
        elif country == "AU":
            first, last = rng.choice(_AU_FIRST), rng.choice(_AU_LAST)
        else:
            pools = {"DE": (_DE_FIRST, _DE_LAST), "FR": (_FR_FIRST, _FR_LAST), "ES": (_ES_FIRST, _ES_LAST)}[country]
            first, last = rng.choice(pools[0]), rng.choice(pools[1])
            if rng.random() < 0.65:
                lang = country.lower()
        return country, lang, first, last

    def phone_number(self, country: str) -> str:
        rng = self.rng
        while True:
            if country == "US":
                num = f"+1{rng.choice(_US_AREA)}55501{rng.randrange(100):02d}"
            elif country == "GB":
                num = f"+447700900{rng.randrange(1000):03d}"
            elif country == "AU":
                num = f"+61491570{rng.randrange(1000):03d}"
            elif country == "DE":
                num = f"+4915755{rng.randrange(100000):05d}"
            elif country == "FR":
                num = f"+3363998{rng.randrange(10000):04d}"
            else:
                num = f"+34600555{rng.randrange(1000):03d}"
            if ("phone", num) not in self.used:
                return num

    def identity(self, cust: _Customer, kind: str, address: str) -> None:
        self.used.add((kind, address))
        self.identities.append({"id": self.new_id(), "customer_id": cust.row["id"], "kind": kind, "address": address})

    def make_customers(self) -> None:
        rng = self.rng
        for _ in range(N_CUSTOMERS):
            country, lang, first, last = self.person()
            c = _Customer()
            c.country, c.lang, c.first, c.name = country, lang, first, f"{first} {last}"
            c.city = rng.choice(_CITIES[country])
            c.street = rng.choice(_STREETS[country]).format(n=rng.randint(2, 220))
            c.account = f"AC-{rng.randrange(10**6, 10**7)}"
            tags: list[str] = []
            c.company = ""
            if rng.random() < 0.07:
                tags.append("enterprise")
                c.company, domain = rng.choice(_COMPANY_DOMAINS)
            else:
                domain = rng.choice(_EMAIL_DOMAINS)
            if rng.random() < 0.08:
                tags.append("vip")
            if rng.random() < 0.03:
                tags.append("accessibility")
            c.row = {
                "id": self.new_id(),
                "display_name": c.name,
                "first_name": first,
                "tags": tags,
                "notes": rng.choice(_CUSTOMER_NOTES) if rng.random() < 0.22 else "",
                "language": lang,
                "created_at": None,
                "updated_at": None,
            }
            # identities: most have a phone and an email; some also WhatsApp (same number) and web chat
            r = rng.random()
            has_phone, has_email = (True, True) if r < 0.82 else ((True, False) if r < 0.91 else (False, True))
            c.phone = c.email = c.whatsapp = c.chat = None
            if has_phone:
                c.phone = self.phone_number(country)
                self.identity(c, "phone", c.phone)
            if has_email:
                f, l_ = _ascii(first).lower(), _ascii(last).lower()
                f, l_ = "".join(ch for ch in f if ch.isalnum()), "".join(ch for ch in l_ if ch.isalnum())
                style = rng.randrange(5)
                local = (f"{f}.{l_}", f"{f}{l_}", f"{f[0]}.{l_}", f"{f}_{l_}{rng.randrange(10, 99)}", f"{f}{rng.randrange(70, 99)}")[style]
                if c.company:
                    local = f"{f}.{l_}"
                address = f"{local}@{domain}"
                while ("email", address) in self.used:
                    address = f"{local}{rng.randrange(2, 999)}@{domain}"
                c.email = address
                self.identity(c, "email", address)
            if rng.random() < 0.42:
                # WhatsApp rides on a phone number: the customer's own, or a phone identity of its own
                # (one number, one customer, whether it texts, calls or writes on WhatsApp).
                c.whatsapp = c.phone or self.phone_number(country)
                if c.whatsapp != c.phone:
                    if ("phone", c.whatsapp) in self.used:
                        c.whatsapp = None
                    else:
                        self.identity(c, "phone", c.whatsapp)
            if rng.random() < 0.6 or not (c.phone or c.email):
                address = f"chat:visitor-{self.hex(4)}"
                while ("chat", address) in self.used:
                    address = f"chat:visitor-{self.hex(4)}"
                c.chat = address
                self.identity(c, "chat", address)
            chans = {}
            if c.email:
                chans["email"] = 30
            if c.phone:
                chans["phone"] = 20
                chans["sms"] = 12
            if c.whatsapp:
                chans["whatsapp"] = 26
            if c.chat:
                chans["chat"] = 40
            c.channels = chans
            c.weight = min(rng.paretovariate(2.2), 3.0)  # a few regulars, many one-off callers
            c.first_contact = c.last_contact = None
            c.had_cancellation = False
            self.customers.append(c)

    def finish_customers(self) -> None:
        rng = self.rng
        for c in self.customers:
            created = self.ago(rng.uniform(30, 1400) * _DAY if rng.random() > 0.08 else rng.uniform(0.5, 25) * _DAY)
            if c.first_contact is not None and created >= c.first_contact:
                created = c.first_contact - timedelta(seconds=rng.uniform(_HOUR, 20 * _DAY))
            tags = c.row["tags"]
            if self.now - created < timedelta(days=30):
                tags.append("new")
            if c.had_cancellation and rng.random() < 0.7 and "churn-risk" not in tags:
                tags.append("churn-risk")
            elif rng.random() < 0.03:
                tags.append("churn-risk")
            c.row["created_at"] = created
            c.row["updated_at"] = max(created, c.last_contact) if c.last_contact else created

    # ---- conversations ------------------------------------------------------------------------------------
    def issue_vars(self, cust: _Customer, topic: _Topic, start: datetime, team: str) -> dict[str, Any]:
        rng = self.rng
        lang = _LANG.get(cust.lang, _EN)
        sym = {"US": "${:.2f}", "AU": "A${:.2f}", "GB": "£{:.2f}"}.get(cust.country)

        def money(lo: float, hi: float) -> str:
            value = round(rng.uniform(lo, hi)) - 0.01
            if sym:
                return sym.format(value)
            return f"{value:.2f} €".replace(".", ",")

        def day(dt: datetime) -> str:
            return lang["date"].format(d=dt.day, month=lang["month"][dt.month - 1], mon=_EN["mon"][dt.month - 1])

        plan = rng.choice(_PLANS)
        charge_day = start - timedelta(days=rng.randint(1, 9))
        eta = start + timedelta(days=rng.randint(2, 12))
        prev_agent = self.agent_by_id[rng.choice(self.team_agents[self.team_id[team]])]["name"].split()[0]
        return {
            "first": cust.first,
            "name": cust.name,
            "amount": money(25, 160),
            "amount2": money(30, 90),
            "credit": money(5, 30),
            "order": f"#{rng.randrange(100000, 999999)}",
            "invoice": f"INV-{start.year}-{rng.randrange(10**5, 10**6)}",
            "ticket": f"#{rng.randrange(1000, 9999)}",
            "incident": f"INC-{rng.randrange(10000, 99999)}",
            "tracking": f"1Z{self.hex(10).upper()}",
            "plan": plan,
            "plan_new": _UPGRADES[plan],
            "last4": f"{rng.randrange(10000):04d}",
            "phone_tail": f"{rng.randrange(100):02d}" if not cust.phone else cust.phone[-2:],
            "date": day(charge_day),
            "eta": day(eta),
            "month": lang["month"][charge_day.month - 1],
            "days": rng.randint(3, 14),
            "router": rng.choice(_ROUTERS),
            "city": cust.city,
            "street": cust.street,
            "account": cust.account,
            "company": cust.company or "Hollis & Reed LLP",
            "travel": rng.choice(_TRAVEL),
            "supervisor": self.supervisor["name"],
            "prev_agent": prev_agent,
            "escalation": rng.choice(_ESCALATION[team]),
            "team": team,
            "when": "",
            "_eta_at": eta,
        }

    def when(self, lang: dict[str, Any], earlier: datetime, later: datetime) -> str:
        days = (later.date() - earlier.date()).days
        if days <= 0:
            return lang["today"]
        if days == 1:
            return lang["yesterday"]
        return lang["days_ago"].format(n=days)

    def make_conversations(self) -> None:
        rng = self.rng
        cum = []
        acc = 0.0
        for c in self.customers:
            acc += c.weight
            cum.append(acc)
        topics = list(_TOPICS)
        while len(self.conversations) < N_CONVERSATIONS:
            cust = rng.choices(self.customers, cum_weights=cum)[0]
            topic = rng.choices(topics, cum_weights=_TOPIC_CUM)[0]
            k = 1 if topic.key == "thank_you" else rng.choices((1, 2, 3), (50, 32, 18))[0]
            avail = dict(cust.channels)
            chans: list[str] = []
            while avail and len(chans) < k:
                ch = rng.choices(list(avail), list(avail.values()))[0]
                chans.append(ch)
                del avail[ch]
                if ch == "sms":
                    avail.pop("whatsapp", None)  # people use one of the two
                elif ch == "whatsapp":
                    avail.pop("sms", None)
                if "phone" in avail:
                    avail["phone"] *= 1.4  # after writing, people call
            k = len(chans)
            # when: an active issue ends in the last days; a past one is all closed
            starts: list[float]  # seconds ago
            if rng.random() < 0.7:
                lead = rng.choices(("open", "pending", "snoozed"), (38, 12, 10))[0]
                if topic.key == "thank_you":
                    lead = "closed"
                last = {
                    "open": lambda: 240 + (2.6 * _DAY) * rng.random() ** 1.5,
                    "pending": lambda: rng.uniform(1 * _HOUR, 5 * _DAY),
                    "snoozed": lambda: rng.uniform(3 * _HOUR, 8 * _DAY),
                    "closed": lambda: rng.uniform(1 * _HOUR, 3 * _DAY),
                }[lead]()
                starts = [last]
                for _ in range(k - 1):
                    starts.append(starts[-1] + rng.uniform(40 * _MIN, 26 * _HOUR))
                starts.reverse()
                statuses = []
                for i, age in enumerate(starts):
                    if i == k - 1:
                        statuses.append(lead)
                    elif age < 3 * _DAY:
                        statuses.append(rng.choices(("closed", "open", "pending"), (45, 30, 25))[0])
                    else:
                        statuses.append(rng.choices(("closed", "pending"), (60, 40))[0])
            else:
                first = rng.uniform(4 * _DAY, 90 * _DAY)
                starts = [first]
                for _ in range(k - 1):
                    starts.append(max(starts[-1] - rng.uniform(30 * _MIN, 40 * _HOUR), 3 * _DAY))
                statuses = ["closed"] * k
            team = topic.team or rng.choice(_TEAMS)
            if topic.key == "cancellation":
                cust.had_cancellation = True
            v = self.issue_vars(cust, topic, self.ago(starts[0]), team)
            weights = list(topic.priority)
            bump = "vip" in cust.row["tags"] or "enterprise" in cust.row["tags"]
            for i, ch in enumerate(chans):
                prio = rng.choices(PRIORITIES, weights)[0]
                if bump and rng.random() < 0.5 and prio != "urgent":
                    prio = PRIORITIES[PRIORITIES.index(prio) + 1]
                if ch == "email":
                    subject = rng.choice(_LANG[cust.lang]["topics"][topic.key][0:1] if cust.lang != "en" else topic.subject)
                elif rng.random() < 0.6:
                    subject = topic.label
                else:
                    subject = None
                self.conversations.append({
                    "id": self.new_id(),
                    "customer_id": cust.row["id"],
                    "channel": ch,
                    "status": statuses[i],
                    "priority": prio,
                    "assignee_id": None,
                    "team_id": self.team_id[team],
                    "subject": subject.format_map(v) if subject else None,
                    "sla_due": None,
                    "snooze_until": None,
                    "created_at": self.ago(starts[i]),
                    "updated_at": None,
                    "last_message_at": None,
                    "version": 1,
                    "_cust": cust,
                    "_topic": topic,
                    "_vars": v,
                    "_prev": (chans[i - 1], self.ago(starts[i - 1])) if i else None,
                })

    def assign(self) -> None:
        rng = self.rng
        demo = self.demo_id
        active = [c for c in self.conversations if c["status"] in ("open", "pending")]
        rng.shuffle(active)
        mine = active[:DEMO_AGENT_OPEN]
        rest = active[DEMO_AGENT_OPEN:]
        unassigned = [c for c in rest if c["status"] == "open"][:UNASSIGNED_OPEN]
        ids = {id(c) for c in unassigned}
        for c in mine:
            c["assignee_id"] = demo
        for c in rest:
            if id(c) not in ids:
                c["assignee_id"] = self.pick_agent(c["team_id"], exclude=demo)
        for c in self.conversations:
            if c["status"] == "snoozed":
                c["assignee_id"] = demo if rng.random() < 0.15 else self.pick_agent(c["team_id"], exclude=demo)
            elif c["status"] == "closed":
                c["assignee_id"] = self.pick_agent(c["team_id"])

    def pick_agent(self, team_id: str, exclude: str | None = None) -> str:
        table = self.pick_tables.get((team_id, exclude))
        if table is None:
            choices = [a for a in self.team_agents[team_id] if a != exclude]
            weights = [1 if self.agent_by_id[a]["role"] == "supervisor" else 4 for a in choices]
            table = self.pick_tables[(team_id, exclude)] = (choices, _cum(weights))
        return self.rng.choices(table[0], cum_weights=table[1])[0]

    # ---- interactions -------------------------------------------------------------------------------------
    def make_interactions(self, conv: Row) -> None:
        rng = self.rng
        cust: _Customer = conv["_cust"]
        topic: _Topic = conv["_topic"]
        status = conv["status"]
        channel = conv["channel"]
        unassigned = conv["assignee_id"] is None
        follow = conv["_prev"] is not None
        agent_id = conv["assignee_id"] or self.pick_agent(conv["team_id"])
        agent = self.agent_by_id[agent_id]
        lang = _LANG.get(cust.lang, _EN)
        v = dict(conv["_vars"])
        v["agent"] = agent["name"].split()[0]
        v["agent_full"] = agent["name"]
        self.current_prev = ""
        if follow:
            prev_channel, prev_at = conv["_prev"]
            self.current_prev = prev_channel
            v["when"] = self.when(lang, prev_at, conv["created_at"])
        elif topic.key == "thank_you":
            v["when"] = self.when(lang, conv["created_at"] - timedelta(days=rng.randint(1, 4)), conv["created_at"])

        # events: (offset seconds from created_at, direction, text, meta, extra)
        if channel == "phone":
            key = status + ("_follow" if follow and status in ("closed", "open", "pending") and rng.random() < 0.45 else "")
            calls = (("in", "resolved"),) if topic.key == "thank_you" else _arc(rng, _PHONE_ARCS, key)
            events = self.phone_events(conv, calls, v, lang, topic)
        else:
            key = "open_unassigned" if (status == "open" and unassigned) else status
            if topic.key == "thank_you":
                steps = ("c_open", "a_fix", "c_thanks", "a_close") if channel == "chat" else _THANKS_ARCS[rng.randrange(2)]
            elif channel == "chat":
                steps = self.chat_arc(status, unassigned)
            else:
                steps = _arc(rng, _EMAIL_ARCS if channel == "email" else _TEXT_ARCS, key)
            events = self.message_events(channel, steps, conv, v, lang, topic, follow)

        # internal notes by the desk
        note_p = {"closed": 0.3, "open": 0.2, "pending": 0.25, "snoozed": 0.7}[status]
        if unassigned:
            note_p = 0.05
        if len(events) > 0 and rng.random() < note_p:
            pos = rng.randrange(1, len(events) + 1)
            if status == "snoozed":
                pos = len(events)
            quick = channel == "chat"  # a note typed during a live chat
            offset = events[pos - 1][0] + events[pos - 1][3].get("duration_s", 0) + rng.uniform(*((20, 150) if quick else (60, 30 * _MIN)))
            text = rng.choice(topic.note).format_map(v)
            author = self.supervisor["id"] if rng.random() < 0.25 else agent_id
            events.insert(pos, [offset, "note", text, {}, {"author": author}])
            for later in events[pos + 1:]:
                if later[0] < offset:
                    later[0] = offset + rng.uniform(*((10, 60) if quick else (30, 600)))
                offset = later[0]

        self.place(conv, events)
        rows = self.interactions
        created = conv["created_at"]
        cid, cust_id = conv["id"], cust.row["id"]
        email_thread: list[tuple[str, str, str, str, datetime, dict[str, Any]]] = []  # (mid, text, who, addr, when, lang)
        subject0 = conv["subject"]
        team_addr = _TEAM_ADDRESS[self.team_name[conv["team_id"]]]
        cc: list[str] = []
        if channel == "email" and rng.random() < 0.08:
            cc = [f"{rng.choice(('accounts', 'partner', 'office', 'j.doe'))}@{cust.email.split('@')[1]}"]
        for offset, direction, text, meta, extra in events:
            at = created + timedelta(seconds=offset)
            author = None
            status_out = None
            subject = None
            if direction == "outbound":
                author = extra.get("author", agent_id)
                status_out = extra.get("delivery")
                if status_out is None:
                    r = rng.random()
                    status_out = "delivered" if r < 0.9 else ("sent" if r < 0.97 else "failed")
            elif direction == "note":
                author = extra["author"]
            if channel == "email" and direction != "note":
                inbound = direction == "inbound"
                mid = f"<{self.hex(24)}@{cust.email.split('@')[1] if inbound else 'demo.agentdesk.test'}>"
                meta = {
                    "message_id": mid,
                    "in_reply_to": email_thread[-1][0] if email_thread else None,
                    "references": [m[0] for m in email_thread],
                    "from": cust.email if inbound else team_addr,
                    "to": [team_addr] if inbound else [cust.email],
                    "cc": list(cc),
                }
                if email_thread:
                    _, p_text, p_who, p_addr, p_at, _ = email_thread[-1]
                    hdr_lang = lang if inbound else _EN
                    header = hdr_lang["wrote"].format(
                        wd=hdr_lang["wd"][p_at.weekday()], d=p_at.day, mon=hdr_lang["mon"][p_at.month - 1],
                        y=p_at.year, hm=f"{p_at.hour:02d}:{p_at.minute:02d}", who=p_who, addr=p_addr,
                    )
                    quoted = "\n".join(f"> {line}" if line else ">" for line in p_text.split("\n"))
                    text = f"{text}\n\n{header}\n{quoted}"
                    subject = f"Re: {subject0}"
                else:
                    subject = subject0
                who = cust.name if inbound else self.agent_by_id[author]["name"]
                email_thread.append((mid, text, who, meta["from"], at, lang))
                if status_out == "failed":
                    status_out = "delivered"
            elif channel in ("sms", "whatsapp") and direction != "note":
                meta = {"segments": _segments(text)}
                if direction == "outbound":
                    meta["provider_sid"] = "SM" + self.hex(32)
            elif channel == "chat" and direction != "note":
                meta = dict(meta)
            if channel == "chat" and status_out == "failed":
                status_out = "delivered"
            rows.append({
                "id": self.new_id(),
                "conversation_id": cid,
                "customer_id": cust_id,
                "channel": channel,
                "direction": direction,
                "author_id": author,
                "text": text,
                "subject": subject,
                "meta": meta,
                "delivery_status": status_out,
                "occurred_at": at,
            })
        last = created + timedelta(seconds=events[-1][0])
        conv["last_message_at"] = last
        self.finish_conversation(conv, last, events)
        if cust.first_contact is None or created < cust.first_contact:
            cust.first_contact = created
        if cust.last_contact is None or last > cust.last_contact:
            cust.last_contact = last

    def place(self, conv: Row, events: list[list[Any]]) -> None:
        """Fit the events between the conversation's start and now (squeezing them if needed), in order."""
        created = conv["created_at"]
        age = (self.now - created).total_seconds()
        budget = age * self.rng.uniform(0.55, 0.98) - 30
        span = events[-1][0]
        if span > budget:
            factor = max(budget, 1) / span
            for e in events:
                e[0] *= factor
        prev = 0.0
        for i, e in enumerate(events):
            e[0] = 0.0 if i == 0 else max(e[0], prev + 1)
            prev = e[0]
            if "duration" in e[4]:  # a call has ended by now
                e[3]["duration_s"] = max(0, min(e[3]["duration_s"], int(age - e[0] - 5)))

    def finish_conversation(self, conv: Row, last: datetime, events: list[list[Any]]) -> None:
        rng = self.rng
        now = self.now
        status = conv["status"]
        age = (now - conv["created_at"]).total_seconds()
        if status == "open":
            target = {"urgent": 1, "high": 4, "normal": 12, "low": 36}[conv["priority"]] * _HOUR
            conv["sla_due"] = now + timedelta(seconds=rng.uniform(5 * _MIN, target))  # breach() moves some back
            conv["updated_at"] = last
        elif status == "pending":
            if rng.random() < 0.05 and age > 2 * _HOUR:
                conv["sla_due"] = now - timedelta(seconds=rng.uniform(5 * _MIN, min(12 * _HOUR, age * 0.5)))
            else:
                conv["sla_due"] = now + timedelta(seconds=rng.uniform(2 * _HOUR, 48 * _HOUR))
            conv["updated_at"] = last
        else:
            room = (now - last).total_seconds() - 1
            conv["updated_at"] = last + timedelta(seconds=max(0.0, min(room, rng.uniform(30, 2 * _HOUR))))
            if status == "snoozed":
                eta = conv["_vars"]["_eta_at"].replace(hour=8, minute=0, second=0, microsecond=0)
                if timedelta(minutes=30) < eta - now < timedelta(days=7):
                    conv["snooze_until"] = eta  # the morning of the date the agent promised
                else:
                    conv["snooze_until"] = now + timedelta(seconds=rng.uniform(30 * _MIN, 3 * _DAY))

    def rate_closed(self) -> None:
        """Some closed conversations got a satisfaction score (1-5) in their last message's meta "csat" (the
        server has no CSAT field; the customer card shows the newest). Mostly good, as in a real center."""
        rng = self.rng
        last: dict[str, Row] = {}
        for row in self.interactions:
            if row["direction"] != "note":  # notes keep an empty meta
                last[row["conversation_id"]] = row
        for conv in self.conversations:
            if conv["status"] == "closed" and conv["id"] in last and rng.random() < CSAT_RATED:
                row = last[conv["id"]]
                row["meta"] = {**row["meta"], "csat": rng.choices((1, 2, 3, 4, 5), (5, 6, 12, 30, 47))[0]}

    def breach(self) -> None:
        """Put a fixed share of the open conversations (those old enough to have missed a target) past SLA."""
        rng, now = self.rng, self.now
        open_ = [c for c in self.conversations if c["status"] == "open"]
        old = [c for c in open_ if (now - c["created_at"]).total_seconds() > 45 * _MIN]
        rng.shuffle(old)
        for c in old[: round(len(open_) * BREACHED_OPEN)]:
            age = (now - c["created_at"]).total_seconds()
            c["sla_due"] = now - timedelta(seconds=rng.uniform(60, min(8 * _HOUR, age * 0.8)))

    # ---- message-based channels ---------------------------------------------------------------------------
    def chat_arc(self, status: str, unassigned: bool) -> tuple[str, ...]:
        rng = self.rng
        m = rng.choices((0, 1, 2, 3), cum_weights=(2, 6, 10, 12))[0]
        middle: list[str] = []
        for j in range(m):
            middle += ("a_ack", "c_ok") if j == m - 1 and rng.random() < 0.5 else ("a_ask2", "c_info2")
        head = ["c_open", "a_ask", "c_info"]
        if status == "closed":
            if rng.random() < 0.15:
                return ("c_open", "a_fix", "c_thanks", "a_close")
            return tuple(head + middle + ["a_fix", "c_thanks", "a_close"])
        if status == "open":
            if unassigned:
                return ("c_open",) if rng.random() < 0.6 else ("c_open", "c_nudge")
            if rng.random() < 0.5:
                return tuple(head + middle + ["a_fix", "c_still"])
            return tuple(head + middle)
        if status == "pending":
            return tuple(head + middle + ["a_fix"])
        return tuple(head + middle + ["a_hold"])

    def message_events(self, channel: str, steps: tuple[str, ...], conv: Row, v: dict[str, Any],
                       lang: dict[str, Any], topic: _Topic, follow: bool) -> list[list[Any]]:
        rng = self.rng
        events: list[list[Any]] = []
        offset = 0.0
        prev_role = ""
        session = {"session_id": "chs_" + self.hex(16)} if channel == "chat" else {}
        greeted = False
        fast = conv["priority"] in ("high", "urgent")
        age = (self.now - conv["created_at"]).total_seconds()
        if channel != "chat" and age < 2 * _HOUR:
            steps = steps[: max(1, 1 + int(age // (25 * _MIN)))]  # a fresh thread can't be long yet
            if conv["status"] == "pending" and steps[-1].startswith("c_") and len(steps) > 1:
                steps = steps[:-1]
        used: set[str] = set()
        self.ask_idx = None
        for i, step in enumerate(steps):
            role = step[0]
            if i:
                if channel == "chat":
                    gap = rng.uniform(15, 150) if step != "a_fix" else rng.uniform(60, 300)
                elif channel == "email":
                    if role == "a":
                        gap = rng.uniform(10 * _MIN, 4 * _HOUR if fast else 20 * _HOUR)
                    elif prev_role == "c":
                        gap = rng.uniform(6 * _HOUR, 40 * _HOUR)
                    else:
                        gap = rng.uniform(10 * _MIN, 30 * _HOUR)
                else:
                    gap = rng.uniform(2 * _MIN, 3 * _HOUR) if role == "a" else rng.uniform(1 * _MIN, 2 * _HOUR)
                    if prev_role == role == "c":
                        gap = rng.uniform(2 * _HOUR, 20 * _HOUR)
                offset += gap
            text = self.step_text(step, channel, v, lang, topic, follow and i == 0, used)
            if channel == "chat" and role == "a" and not greeted:
                text = rng.choice(lang["chat_hello"]).format_map(v) + text
                greeted = True
            if channel == "email":
                if role == "c":
                    if i == 0:
                        text = f"{rng.choice(lang['greet_in']).format_map(v)}\n\n{text}\n\n{rng.choice(lang['signoff_in']).format_map(v)}"
                    else:
                        text = f"{text}\n\n{rng.choice(lang['signoff_in']).format_map(v)}"
                else:
                    text = f"{rng.choice(lang['greet_out']).format_map(v)}\n\n{text}\n\n{rng.choice(lang['signoff_out']).format_map(v)}"
            elif channel == "chat" and role == "c" and i == 0:
                hello = rng.choice(lang["chat_open"])
                text = hello + (_lower_first(text) if hello.endswith(", ") else text)
            events.append([offset, "inbound" if role == "c" else "outbound", text, dict(session), {}])
            prev_role = role
        return events

    def step_text(self, step: str, channel: str, v: dict[str, Any], lang: dict[str, Any], topic: _Topic,
                  follow: bool, used: set[str]) -> str:
        rng = self.rng
        native = lang is _EN

        def pick(options: tuple[str, ...]) -> str:
            i = rng.randrange(len(options))
            if step in ("c_info", "c_info2") and self.ask_idx is not None and self.ask_idx < len(options):
                i = self.ask_idx  # answer the question that was asked
            elif options[i] in used:  # one more try, so a thread doesn't repeat itself
                i = rng.randrange(len(options))
            self.ask_idx = i if step in ("a_ask", "a_ask2") else None
            used.add(options[i])
            return options[i].format_map(v)

        if step == "c_open":
            if native:
                body = pick(topic.open if channel == "email" else topic.short)
                if channel != "email" and not body.endswith(("?", ".", "!")):
                    body += rng.choice((".", "!", "", " :(", "..."))
            else:
                body = pick(lang["topics"][topic.key][1])
            if follow:
                prev_channel = self.current_prev
                body = f"{pick(lang['followup'][prev_channel])} {body}"
            return body
        if not native:
            return pick(lang[_STEP_KEY[step]])
        if step == "c_still" and topic.key in _REQUESTS:
            return pick(_EN["not_yet"])
        if step in _TOPIC_STEP:
            return pick(getattr(topic, _TOPIC_STEP[step]))
        return pick(_EN[_STEP_KEY[step]])

    # ---- phone --------------------------------------------------------------------------------------------
    def phone_events(self, conv: Row, calls: tuple[tuple[str, str], ...], v: dict[str, Any], lang: dict[str, Any],
                     topic: _Topic) -> list[list[Any]]:
        rng = self.rng
        native = lang is _EN
        events: list[list[Any]] = []
        offset = 0.0
        phrase = rng.choice(topic.phrase).format_map(v)
        v = dict(v, phrase=phrase, callback=rng.choice(_CALLBACK_WHEN))
        shorts = topic.short if native else lang["topics"][topic.key][1]
        q = rng.randrange(len(shorts))
        short = shorts[q].format_map(v)
        fixes = topic.fix if native else lang["fix"]
        fix = fixes[q if q < len(fixes) else 0].format_map(v)  # what the caller said, the fix and the summary match

        def agent_line(key: str, en: tuple[str, ...]) -> str:
            return rng.choice(en if native else lang[key]).format_map(v)

        for i, (direction, disposition) in enumerate(calls):
            if i:
                offset += rng.uniform(30 * _MIN, 30 * _HOUR)
            lo, hi = _CALL_SECONDS[disposition]
            duration = rng.randint(lo, hi) if hi else 0
            if direction == "in" and disposition == "resolved":
                head = topic.summary[q if q < len(topic.summary) else 0].format_map(v)
            elif direction == "in":
                head = rng.choice(_CALL_ABOUT).format_map(v)
            else:
                head = f"Called back re: {phrase}"
            tail = rng.choice(_DISPOSITION_TEXT[(direction, disposition)]).format_map(v)
            summary = f"{head} — {tail}."
            if disposition == "no-answer":
                transcript = ""
            elif disposition == "voicemail":
                transcript = "Voicemail: " + (lang["vm_in"] if direction == "in" else lang["vm_out"]).format_map(v)
            elif direction == "out":
                transcript = f"Agent: {lang['hello_out'].format_map(v)} Customer: {lang['glad']} Agent: {fix}"
            elif disposition == "resolved":
                asks, infos = (topic.ask, topic.info) if native else (lang["ask"], lang["info"])
                a = rng.randrange(len(asks))
                transcript = (
                    f"Customer: {short}. Agent: {asks[a].format_map(v)} Customer: {infos[a].format_map(v)} "
                    f"Agent: {fix}"
                )
            elif disposition == "callback-requested":
                transcript = (
                    f"Customer: {short}. Agent: {agent_line('ack', _EN['ack'])} Customer: {lang['callback_ask']} "
                    f"Agent: {lang['callback_ok'].format_map(v)}"
                )
            else:  # escalated / transferred
                still = rng.choice(_EN["still"] if native else lang["still"])
                transcript = (
                    f"Customer: {short}. Agent: {agent_line('ask', topic.ask)} Customer: {still} "
                    f"Agent: {lang['escalate'].format_map(v)}"
                )
            transcript = transcript.replace("?.", "?").replace("!.", "!").replace("..", ".")
            meta = {
                "call_direction": "inbound" if direction == "in" else "outbound",
                "duration_s": duration,
                "disposition": disposition,
                "transcript": transcript,
            }
            extra: dict[str, Any] = {"duration": True}
            if direction == "out":
                extra["delivery"] = "failed" if disposition == "no-answer" else "delivered"
            events.append([offset, "inbound" if direction == "in" else "outbound", summary, meta, extra])
            offset += duration
        return events
