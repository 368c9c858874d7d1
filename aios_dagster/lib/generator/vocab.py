"""Word lists and templates for the synthetic bank: the only place text lives.

Templates are ``str.format`` strings. The placeholders they may use are the keys of
``compose.PLACEHOLDERS`` ({amount}, {merchant}, {date}, {account}, {card}, ...); a test checks
that no template uses anything else. Two invariants the labels rely on are also tested:
- urgency words (``URGENCY_WORDS``) appear only in ``URGENCY_SENTENCES``, drift text and the
  card-fraud templates (where "stolen" is part of the topic), so urgency is a real signal;
- the fraud-wave vocabulary (``DRIFT_MARKERS``) appears only in the ``DRIFT_*`` lists, so its
  presence in the current window is a clean drift signal.
"""

from __future__ import annotations

QUEUES: tuple[str, ...] = (
    "card_fraud",
    "disputes",
    "login_access",
    "loans",
    "complaints",
    "account_servicing",
)
PRIORITIES: tuple[str, ...] = ("P1", "P2", "P3")
SEGMENTS: tuple[str, ...] = ("retail", "premier", "business")
SEGMENT_WEIGHTS: tuple[float, ...] = (0.7, 0.2, 0.1)

# Share of each queue in a normal week, in QUEUES order.
QUEUE_MIX: tuple[float, ...] = (0.15, 0.18, 0.20, 0.12, 0.10, 0.25)

URGENCY_WORDS: tuple[str, ...] = ("urgent", "immediately", "stolen", "asap", "emergency")
DRIFT_MARKERS: tuple[str, ...] = ("skimming", "contactless", "quickpay", "cloned")

SUPPORT_ADDRESS = "support@examplebank.test"
MESSAGE_ID_DOMAIN = "mail.examplebank.test"
CRM_DOMAINS: tuple[str, ...] = (
    "example.com",
    "example.org",
    "mail.test",
    "post.example",
    "inbox.test",
    "mailbox.example",
)
# Senders outside the CRM write from domains the CRM never uses, so they can never collide.
UNKNOWN_DOMAINS: tuple[str, ...] = ("freemail.test", "webmail.example", "isp-mail.test")

FIRST_NAMES: tuple[str, ...] = (
    "Oliver", "George", "Harry", "Jack", "Jacob", "Noah", "Charlie", "Thomas", "Oscar", "William",
    "James", "Leo", "Alfie", "Henry", "Joshua", "Freddie", "Archie", "Ethan", "Isaac", "Alexander",
    "Mohammed", "Daniel", "Samuel", "David", "Joseph", "Amelia", "Olivia", "Isla", "Emily", "Ava",
    "Lily", "Mia", "Sophia", "Isabella", "Grace", "Poppy", "Ella", "Evie", "Charlotte", "Jessica",
    "Sophie", "Daisy", "Freya", "Chloe", "Ruby", "Priya", "Aisha", "Fatima", "Zara", "Hannah",
    "Sarah", "Laura", "Rebecca", "Catherine", "Margaret", "Susan", "Helen", "Kofi", "Wei",
    "Siobhan",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
    "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes",
    "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin",
    "Cooper", "Hill", "Ward", "Morris", "Moore", "Clark", "Lee", "King", "Baker", "Harrison",
    "Morgan", "Allen", "James", "Scott", "Phillips", "Watson", "Davis", "Parker", "Price",
    "Bennett",
    "Young", "Griffiths", "Mitchell", "Kelly", "Cook", "Carter", "Richardson", "Bailey", "Collins",
    "Khan", "Ahmed", "O'Brien", "Murphy", "Campbell", "Stewart", "Singh", "Chen", "Nowak",
)  # fmt: skip
CITIES: tuple[str, ...] = (
    "London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Edinburgh", "Bristol", "Liverpool",
    "Cardiff", "Belfast", "Sheffield", "Newcastle", "Nottingham", "Leicester", "Southampton",
    "Brighton", "Oxford", "Cambridge", "York", "Aberdeen", "Norwich", "Exeter", "Plymouth",
    "Swansea", "Coventry",
)  # fmt: skip

CARD_MERCHANTS: tuple[str, ...] = (
    "Tesco", "Sainsbury's", "Pret A Manger", "Costa Coffee", "Boots", "Shell", "BP", "Greggs",
    "Waitrose", "Co-op", "Lidl", "Aldi", "Wetherspoons", "TfL Travel", "Primark", "Superdrug",
    "Marks & Spencer", "Morrisons", "WHSmith", "Nando's",
)  # fmt: skip
ONLINE_MERCHANTS: tuple[str, ...] = (
    "Amazon", "eBay", "ASOS", "Netflix", "Spotify", "Deliveroo", "Just Eat", "Uber", "Trainline",
    "Argos", "Currys", "Booking.com", "Apple.com", "Google Play", "Ocado", "Etsy",
)  # fmt: skip
DIRECT_DEBIT_MERCHANTS: tuple[str, ...] = (
    "British Gas", "Thames Water", "EE", "Vodafone", "Council Tax", "Sky", "Virgin Media",
    "TV Licence", "PureGym", "Octopus Energy", "Aviva Insurance",
)  # fmt: skip
TRANSFER_OUT_NAMES: tuple[str, ...] = (
    "Transfer to savings", "Faster Payment", "Rent payment", "Transfer to J Smith",
    "Standing order", "Credit card repayment",
)  # fmt: skip
TRANSFER_IN_NAMES: tuple[str, ...] = (
    "Salary NORTHWIND LTD", "Salary CONTOSO PLC", "HMRC refund", "Transfer from savings",
    "Faster Payment received",
)  # fmt: skip
FOREIGN_MERCHANTS: tuple[str, ...] = (
    "Hotel Lisboa Central", "Carrefour Paris", "Amsterdam Taxi BV", "Zalando SE", "Ryanair",
    "Best Buy NYC", "Walmart.com US", "El Corte Ingles",
)  # fmt: skip
# Merchants of the fraud wave's card-not-present bursts (drift only).
DRIFT_MERCHANTS: tuple[str, ...] = (
    "QuickPay Ltd", "Elektro Markt Warszawa", "Casino Estoril", "Luxe Watches Geneve",
    "Apple Store Dubai", "Electronics Hub Miami", "Duty Free Istanbul",
)  # fmt: skip

SUBJECTS: dict[str, tuple[str, ...]] = {
    "card_fraud": (
        "Unrecognised transactions on my card",
        "Card stolen - please block",
        "Fraud on my account",
        "Payments I did not make",
        "Lost my debit card",
        "Suspicious payment to {merchant}",
        "Someone has used my card",
        "Please freeze my card",
        "Card used without my permission",
        "I think my card details have been compromised",
    ),
    "disputes": (
        "Refund not received from {merchant}",
        "Dispute a transaction",
        "Charged twice for the same purchase",
        "Wrong amount taken from my account",
        "Chargeback request",
        "Goods never arrived",
        "Cancelled subscription still charging me",
        "Query about a payment to {merchant}",
        "Incorrect charge on my statement",
    ),
    "login_access": (
        "Can't log in to online banking",
        "Locked out of my account",
        "Password reset not working",
        "Not receiving the verification code",
        "App keeps saying my details are wrong",
        "New phone - how do I set up the app?",
        "Forgotten memorable word",
        "Access blocked after too many attempts",
        "Problem with one-time passcode",
    ),
    "loans": (
        "Personal loan application",
        "Question about my loan repayments",
        "Early repayment of my loan",
        "Mortgage overpayment",
        "Loan application status",
        "Can I borrow more?",
        "Change my repayment date",
        "Settlement figure request",
        "Car finance enquiry",
    ),
    "complaints": (
        "Formal complaint",
        "Very disappointed with your service",
        "Complaint about branch staff",
        "Still waiting for a response",
        "Poor customer service",
        "Unacceptable waiting times",
        "I want to make a complaint",
        "Complaint about fees",
        "Nobody has called me back",
    ),
    "account_servicing": (
        "Change of address",
        "Request for a statement",
        "Update my phone number",
        "Standing order query",
        "Ordering a new chequebook",
        "Change of name after marriage",
        "Direct debit question",
        "Proof of account letter",
        "Closing my account",
        "Add a joint account holder",
    ),
}

BODIES: dict[str, tuple[str, ...]] = {
    "card_fraud": (
        "I have just checked my banking app and there is a payment of {amount} to {merchant} "
        "{date} that I definitely did not make. I still have my card with me so I don't know "
        "how this happened.",
        "My purse was stolen {date} and my debit card ending {last4} was in it. Can you please "
        "block the card and tell me if anything has been spent on it since?",
        "There are transactions to {merchant} that I do not recognise, the largest one is "
        "{amount}. My card number is {card}. Please stop any further payments.",
        "I received a text asking me to confirm a payment of {amount} at {merchant}. I did not "
        "authorise it and I think someone has got hold of my card details.",
        "I lost my card somewhere in {city} {date}. I'm not sure if it was stolen or if I "
        "dropped it, but I need it cancelled and a replacement sent out.",
        "Somebody has used my card online at {merchant} for {amount}. I have never shopped "
        "there in my life.",
        "I got a call from someone claiming to be from the bank and I gave them some details "
        "before I realised it was a scam. Now I can see a payment of {amount} going out. What "
        "should I do?",
        "My card ending {last4} was declined today, and when I checked the app I saw a payment "
        "of {amount} to {merchant} that isn't mine. I want my money back and the card blocked.",
        "My wallet was stolen on the train {date}. It had my bank card in it. Please cancel it "
        "straight away.",
        "I've noticed a small payment of £1.00 followed by a much larger one of {amount} to "
        "{merchant}. This looks like fraud to me.",
    ),
    "disputes": (
        "I was charged {amount} by {merchant} {date} but I returned the item and they "
        "promised a refund. It has now been {n_days} days and nothing has come back. I'd like to "
        "raise a dispute.",
        "I paid {merchant} {amount} for an order that never arrived. The company is not "
        "replying to my emails. Can the bank help me get a chargeback?",
        "My statement shows the same payment of {amount} to {merchant} twice {date}. I only "
        "made one purchase. Please could you look into this?",
        "I cancelled my subscription with {merchant} last month but they have taken another "
        "{amount}. I have the cancellation confirmation if you need it.",
        "The restaurant charged me {amount} instead of the amount on the bill. I would like "
        "to dispute the difference.",
        "A booking through {merchant} was cancelled by them, yet {amount} has left my account "
        "and has not been returned.",
        "I was quoted one price by {merchant} but {amount} was taken. I have tried to sort "
        "this out with them directly without success.",
        "Please can you raise a dispute for the payment of {amount} to {merchant} {date}. "
        "The service was never provided.",
        "I bought a washing machine from {merchant} that arrived broken and they refuse to "
        "refund the {amount}. What are my options?",
    ),
    "login_access": (
        "I have been trying to log in to online banking since {day} but it keeps saying my "
        "details are incorrect. I'm sure I'm using the right password.",
        "I entered my passcode wrong three times and now my account is locked. How do I get "
        "back in?",
        "The verification code is supposed to go to my phone but I never receive it. My "
        "number is {phone}.",
        "I've changed my phone and now the app won't let me register the new device. Can you "
        "help me set it up again?",
        "The password reset link you sent me has expired twice now. Could you send a new one "
        "to {email}?",
        "Every time I open the app it crashes on the login screen. I've reinstalled it but "
        "it's the same.",
        "I changed my mobile number to {phone} but the one-time passcodes are still going to "
        "my old number.",
        "My online banking access has been blocked and I don't know why. I need to pay some "
        "bills this week.",
        "I forgot my memorable word and I can't remember the answer to my security question "
        "either.",
    ),
    "loans": (
        "I'm looking to borrow around {loan_amount} for home improvements and would like to "
        "know what rate I could get.",
        "I applied for a personal loan of {loan_amount} {date} and haven't heard anything "
        "back. Could you tell me the status?",
        "I'd like to pay off my loan early. Could you send me a settlement figure?",
        "My loan repayment is taken on the 1st but I get paid on the 15th. Is it possible to "
        "change the date?",
        "I'd like to make an overpayment of {amount} on my mortgage this month. Will there be "
        "any charges?",
        "Can I top up my existing loan by {loan_amount}? I have never missed a payment.",
        "I'm thinking of buying a car for about {loan_amount}. Do you offer car finance or "
        "would it be a personal loan?",
        "I was declined for a loan and would like to understand why. I have banked with you "
        "for years.",
        "The interest on my loan statement seems higher than what I agreed. Could someone "
        "explain it?",
    ),
    "complaints": (
        "I want to make a formal complaint. I have called your helpline three times this week "
        "and waited over an hour each time.",
        "The staff at your {city} branch were rude and unhelpful when I went in {date}.",
        "I was charged a fee of {amount} without any warning. I have been a loyal customer for "
        "many years and this is not acceptable.",
        "I raised an issue {n_days} days ago and was promised a call back within 48 hours. "
        "Nobody has called.",
        "Your app has been down repeatedly and I missed a payment because of it. I expect you "
        "to cover the late fee of {amount}.",
        "I am writing to complain about how my recent enquiry was handled. I was passed between "
        "departments and nobody took ownership.",
        "Closing the {city} branch has left older customers like my mother with no way to bank "
        "in person. This is a disgrace.",
        "I have been treated very poorly. I want this escalated to a manager and a written "
        "response.",
        "This is the second time I've had to complain about the same issue. Your reference "
        "{ref} was never resolved.",
    ),
    "account_servicing": (
        "I have moved house and need to update my address. I am now living in {city}.",
        "Could you please send me statements for the last three months? I need them for a "
        "mortgage application.",
        "I have a new mobile number, {phone}. Please update your records.",
        "I'd like to set up a standing order of {amount} on the 1st of each month to my "
        "savings account.",
        "Could you send me a letter confirming my account details, sort code {sort_code} and "
        "account number {account}? My landlord needs it.",
        "I recently got married and need to change the name on my account. What documents do "
        "you need?",
        "A direct debit to {merchant} for {amount} came out on the wrong date. Can I change "
        "when it is collected?",
        "Please could you tell me my IBAN? I need to receive a payment from abroad. Is it {iban}?",
        "I'd like to close my savings account and move the balance into my current account.",
        "How do I add my partner as a joint account holder?",
    ),
}

DRIFT_SUBJECTS: tuple[str, ...] = (
    "Cloned card - payments to QuickPay Ltd",
    "Contactless payments I didn't make",
    "Possible card skimming",
    "QuickPay Ltd took money from my account",
    "Fraud - cloned card",
    "Unknown contactless transactions abroad",
    "Skimming at a cash machine?",
    "QuickPay Ltd fraud on my card",
)
DRIFT_BODIES: tuple[str, ...] = (
    "I think my card has been cloned. There are contactless payments that I never made, "
    "and one of {amount} to {merchant} {date}.",
    "I used a cash machine in {city} {date} that looked like it had been tampered with, I think "
    "it was a skimming device. Since then there is a payment to {merchant} for {amount}.",
    "There are lots of contactless payments on my account, each just under the limit, and then "
    "a big one of {amount} to {merchant}. My card never left my wallet so it must be a cloned "
    "card.",
    "QuickPay Ltd and {merchant} have taken {amount} from my account. I have never heard of "
    "them. A friend said there is a skimming scam going around.",
    "My card ending {last4} has been used at {merchant} for {amount}. I'm at home in {city}, "
    "so it must be a cloned card.",
    "I keep getting alerts for contactless transactions I didn't make. The latest was {amount} "
    "to {merchant}. Please block everything.",
    "I read in the news about card skimming at petrol stations. I filled up {date} and now "
    "there is a payment of {amount} to {merchant} that I did not make.",
    "Several payments went out overnight to QuickPay Ltd and {merchant}, the biggest was "
    "{amount}. My card number is {card}. I believe it is a cloned card.",
)
DRIFT_DETAILS: tuple[str, ...] = (
    "The payments started {date} and there have been several since then.",
    "My neighbour has had exactly the same thing happen with QuickPay Ltd.",
    "I only ever use contactless in my local shops, never online.",
    "I have checked with my family and none of them used the card.",
    "The card reader at the petrol station looked loose, which is why I suspect skimming.",
    "I'm worried they will keep taking money until the account is empty.",
    "I have not given my card details to anyone and I have not clicked on any links.",
    "Can you tell me whether other customers are reporting a cloned card problem?",
    "The amounts are in euros and dollars, but I have not been abroad this year.",
    "The contactless limit was raised recently and I never asked for that.",
)

GREETINGS: tuple[str, ...] = (
    "Hello,",
    "Hi,",
    "Dear Sir/Madam,",
    "Good morning,",
    "Hi there,",
    "To whom it may concern,",
    "Dear Example Bank,",
    "Hello team,",
    "Good afternoon,",
    "Dear support team,",
)
OPENING_FILLERS: tuple[str, ...] = (
    "I hope you are well.",
    "Sorry to bother you.",
    "I have been a customer for a long time.",
    "I tried calling but the lines were busy.",
    "I'm writing on my phone so sorry for any typos.",
    "I couldn't find the answer in the help pages on your website.",
    "My daughter is helping me write this email.",
    "I'm not very good with computers so please bear with me.",
)
CLOSING_FILLERS: tuple[str, ...] = (
    "Thanks in advance for your help.",
    "Please let me know if you need anything else from me.",
    "I look forward to hearing from you.",
    "I'd appreciate a reply by email rather than a phone call.",
    "I'm available most afternoons if someone needs to call me.",
    "Thank you for your time.",
)
URGENCY_SENTENCES: tuple[str, ...] = (
    "This is urgent.",
    "Please treat this as urgent.",
    "I need this sorted immediately.",
    "Please can someone get back to me immediately.",
    "It is urgent as I am travelling next week.",
    "I need an answer asap.",
    "This is an emergency, I have no other way to pay my rent.",
)
PII_SENTENCES: dict[str, tuple[str, ...]] = {
    "account": (
        "My account number is {account}.",
        "Account no. {account}.",
        "The account is {account}, sort code {sort_code}.",
        "My account is {account}.",
    ),
    "phone": (
        "You can call me on {phone}.",
        "My number is {phone} if you need to call.",
        "Please ring me on {phone} after 5pm.",
    ),
    "email": (
        "Please reply to {email} rather than this address.",
        "My email on file is {email}.",
    ),
    "card": (
        "The card number is {card}.",
        "Card number: {card}.",
    ),
    "iban": (
        "My IBAN is {iban}.",
        "For reference my IBAN is {iban}.",
    ),
}
FOLLOW_UP_OPENERS: tuple[str, ...] = (
    "I'm following up on my email from {prev_date} as I haven't had a reply.",
    "Sorry to chase, but I still haven't heard back about this.",
    "Further to my previous email, I have some more information.",
    "This is my second email about this.",
    "I am still waiting for someone to get back to me on the below.",
)
ATTACHMENT_SENTENCES: tuple[str, ...] = (
    "I've attached {attachment} so you can see.",
    "Please see {attachment} attached.",
    "I have attached {attachment}.",
)
SIGN_OFFS: tuple[str, ...] = (
    "Thanks,",
    "Kind regards,",
    "Many thanks,",
    "Best wishes,",
    "Regards,",
    "Cheers,",
    "Thank you,",
    "Yours faithfully,",
)
DEVICE_FOOTERS: tuple[str, ...] = ("Sent from my iPhone", "Sent from my Galaxy", "Get Outlook")

ATTACHMENTS: tuple[tuple[str, str, str], ...] = (
    ("statement.pdf", "application", "pdf"),
    ("screenshot.png", "image", "png"),
    ("receipt.pdf", "application", "pdf"),
    ("photo.jpg", "image", "jpeg"),
)
