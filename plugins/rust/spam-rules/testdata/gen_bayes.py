#!/usr/bin/env python3
"""Writes the labelled Bayes sample set: examples/messages/bayes/{spam,ham}/NN.eml.

Short, realistic-looking messages made from per-topic templates with a fixed
random seed, so the set is reproducible. Run from the repository root:
    python3 plugins/rust/spam-rules/testdata/gen_bayes.py
"""
import os
import random

rnd = random.Random(5)
ROOT = os.path.join("examples", "messages", "bayes")

HAM = [
    ("Notes from today's standup", "team", [
        "Quick summary of the standup: the release branch is cut, {name} is fixing the flaky integration test, and the database migration runs tonight after the backup.",
        "Please review the pull request for the retry schedule before Thursday. I left comments on the error handling and the config defaults.",
        "The sprint retrospective moved to Friday at 10:00 in the small meeting room.",
    ]),
    ("Dinner on Saturday?", "family", [
        "Hi {name}, are you free on Saturday evening? Mum is cooking pierogi and your aunt is bringing the cheesecake.",
        "The kids want to show you their school project about volcanoes. Come around six if you can.",
        "Let me know if you need a lift from the station, the trains are slow on weekends.",
    ]),
    ("Invoice 2025-{n} for consulting", "billing", [
        "Attached is the invoice for the consulting hours in May, payable within 30 days to the usual account.",
        "The timesheet lists the workshop, two review sessions and the architecture document.",
        "Thanks for the smooth collaboration, and let me know if the purchase order number needs changing.",
    ]),
    ("Book club: next title", "club", [
        "For next month we picked the novel about the lighthouse keeper. The library has four copies on hold for us.",
        "We meet at the cafe on the corner of the square, second Tuesday, seven o'clock.",
        "{name} offered to lead the discussion; bring your favourite quotes and questions about the ending.",
    ]),
    ("Re: trip to the mountains", "travel", [
        "I booked the hut for two nights, the weather forecast looks good for hiking on the ridge.",
        "Bring warm layers, the evenings are cold at that altitude, and the boots you broke in last summer.",
        "The bus leaves at 7:15 from the central station; I will buy the tickets tomorrow.",
    ]),
    ("Code review: parser changes", "dev", [
        "The new parser handles folded header lines correctly now; I added unit tests for the edge cases in the grammar.",
        "One question about the buffer handling: can we avoid the extra copy when the line fits in the read buffer?",
        "Benchmarks show the same throughput as before, within the noise of the machine.",
    ]),
]

SPAM = [
    ("Cheap meds without prescription", "pharma", [
        "Buy generic pills online at the lowest price, discreet shipping worldwide, no prescription needed.",
        "Our online pharmacy offers huge discounts on bestsellers, order today and save up to 80 percent.",
        "Satisfaction guaranteed or your money back, trusted by thousands of happy customers.",
    ]),
    ("You are a WINNER - claim your prize", "lottery", [
        "Congratulations! Your email address was selected in our international lottery draw and you won a cash prize.",
        "To claim your winnings send your full name, bank details and a processing fee by wire transfer.",
        "This offer expires soon, reply urgently to the claims agent to release the funds.",
    ]),
    ("Your account has been suspended", "phish", [
        "We detected unusual activity and your account has been suspended. Verify your account within 24 hours.",
        "Click the secure link below to confirm your password and billing information or your account will be closed.",
        "Security department, customer protection team.",
    ]),
    ("Double your bitcoin in 7 days", "crypto", [
        "Our crypto investment platform delivers guaranteed returns with zero risk, join thousands of investors today.",
        "Deposit now and our trading robot doubles your money, withdraw profits any time.",
        "Limited places left for the exclusive bonus program, act now.",
    ]),
    ("Lose 10 kg in two weeks", "diet", [
        "This miracle diet supplement burns fat while you sleep, doctors hate this simple trick.",
        "Order your free trial bottle today, just pay shipping, results guaranteed or money back.",
        "Thousands of customers lost weight fast without exercise.",
    ]),
    ("Urgent business proposal", "419", [
        "I am a bank official with a confidential proposal concerning an inheritance fund of 15 million dollars.",
        "I need a trustworthy foreign partner to act as beneficiary; you will receive 40 percent of the total sum.",
        "Reply with your private telephone number and keep this transaction strictly confidential.",
    ]),
]

NAMES = ["Ola", "Marek", "Kasia", "Tom", "Anna", "Piotr", "Eva", "Jan"]
HAM_DOMAINS = ["example.org", "firma.example", "uni.example.edu", "mail.example.net"]
SPAM_DOMAINS = ["promo-deals.example", "win-now.example", "secure-verify.example", "cashfast.example"]
HAM_FILLER = "thanks regards meeting tomorrow schedule project document review update weekend family dinner library station notes plan".split()
SPAM_FILLER = "free offer cash bonus discount guaranteed exclusive winner urgent money order click today limited deal profit".split()


def message(label, i, subject, topic, lines):
    name = rnd.choice(NAMES)
    ham = label == "ham"
    dom = rnd.choice(HAM_DOMAINS if ham else SPAM_DOMAINS)
    sender = f"{name.lower()}@{dom}" if ham else f"{rnd.choice(['info', 'offers', 'support', 'agent'])}@{dom}"
    body = [l.format(name=rnd.choice(NAMES)) for l in rnd.sample(lines, k=len(lines))]
    filler = HAM_FILLER if ham else SPAM_FILLER
    body.append(" ".join(rnd.sample(filler, k=5)).capitalize() + ".")
    if ham:
        body.append(f"\n{name}")
    else:
        body.append(f"\nVisit http://{dom}/{topic}?id={rnd.randint(1000, 9999)} now.")
    day = 1 + i % 27
    head = [
        f"Received: from mx.{dom} (mx.{dom} [192.0.2.{10 + i}]) by mx.example.test with ESMTP; Mon, {day:02d} Jun 2025 09:{i:02d}:00 +0000",
        f"Date: Mon, {day:02d} Jun 2025 09:{i:02d}:00 +0000",
        f"Message-ID: <{label}.{i}.{rnd.randint(10**6, 10**7)}@{dom}>",
        f"From: {name if ham else 'Customer Service'} <{sender}>",
        "To: alice@example.test",
        "Subject: " + subject.format(n=f"{i:03d}"),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    return "\r\n".join(head) + "\r\n\r\n" + "\r\n".join(body) + "\r\n"


for label, topics in (("spam", SPAM), ("ham", HAM)):
    out = os.path.join(ROOT, label)
    os.makedirs(out, exist_ok=True)
    for i in range(24):
        subject, topic, lines = topics[i % len(topics)]
        with open(os.path.join(out, f"{i + 1:02d}.eml"), "w", newline="") as f:
            f.write(message(label, i, subject, topic, lines))
