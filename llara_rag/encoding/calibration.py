"""Fixed text int8 is calibrated on: which input channels of each linear layer carry the large activations.

SmoothQuant (Xiao et al. 2023) moves those channels' range from the activations into the weights before
both are quantised to int8. The channels that carry outliers belong to the model, not to the input, so a
few paragraphs of varied prose (written for this project) and questions find them; being fixed, they give
every process the same scales, hence the same vectors.
"""

PASSAGES: tuple[str, ...] = (
    "Photosynthesis converts light energy into chemical energy. In the chloroplasts of plant cells, "
    "chlorophyll absorbs mostly blue and red light, and the energy drives the splitting of water into "
    "oxygen, protons and electrons. The electrons pass along a chain of proteins in the thylakoid membrane, "
    "pumping protons that power ATP synthase. In the Calvin cycle, the enzyme RuBisCO fixes carbon dioxide "
    "into three-carbon sugars, which the plant builds into glucose, starch and cellulose.",
    "Patients with type 2 diabetes were randomised to metformin or placebo for 24 weeks. The primary "
    "outcome, the change in HbA1c from baseline, fell by 1.1% (95% CI 0.8-1.4) in the treatment arm. "
    "Gastrointestinal side effects were reported by 18 of 152 participants; no case of lactic acidosis "
    "occurred. The authors conclude that the drug remains a safe first-line therapy, although the trial "
    "was not powered to detect differences in cardiovascular events.",
    "The tenant shall pay the rent monthly in advance, on or before the first day of each calendar month. "
    "If any payment is more than ten days late, the landlord may charge a fee of 5% of the overdue amount. "
    "Either party may terminate this agreement by giving sixty days' written notice; the deposit will be "
    "returned within thirty days of the end of the lease, less any deductions for damage beyond normal "
    "wear and tear.",
    "To install the package, create a virtual environment and run `pip install -e .[dev]`. The command-line "
    "tool reads its settings from config.yaml; a missing key falls back to the default in settings.py. "
    "def retry(fn, attempts=3):\n    for i in range(attempts):\n        try:\n            return fn()\n"
    "        except TimeoutError:\n            time.sleep(2 ** i)\n    raise RuntimeError('gave up')",
    "In 1453 the Ottoman army under Mehmed II laid siege to Constantinople. After fifty-three days, the "
    "walls that had protected the city for a thousand years were breached, and Emperor Constantine XI "
    "died in the fighting. The fall of the Byzantine capital closed the Middle Ages for many historians; "
    "Greek scholars who fled to Italy carried manuscripts that fed the Renaissance.",
    "Shares of the company rose 7.4% on Tuesday after it reported quarterly revenue of $3.2 billion, above "
    "analysts' estimates of $2.9 billion. Operating margin widened to 21% from 17% a year earlier, helped by "
    "lower shipping costs. The board raised the dividend by two cents and announced a $500 million buyback, "
    "while warning that currency swings could weigh on results in Europe.",
    "Whisk two eggs with 200 ml of milk and a pinch of salt. Sift in 120 g of flour and stir until the "
    "batter is smooth, then let it rest for half an hour. Heat a little butter in a frying pan over medium "
    "heat, pour in a thin layer and tilt the pan so it covers the bottom. Turn the pancake when the edges "
    "lift, after about a minute, and serve with lemon and sugar.",
    "The home side equalised in the 89th minute when their captain headed in a corner, and a penalty in "
    "stoppage time sealed a 2-1 win that lifts them to third in the table. The coach praised the team's "
    "patience: 'We kept the ball, we kept believing.' The visitors, who had led since the first half, "
    "have now dropped points from winning positions in four of their last six matches.",
    "Q: How do I reset my password? A: Open the sign-in page and choose 'Forgot password'. Enter the email "
    "address of your account and we will send a link that is valid for one hour. If no email arrives, "
    "check your spam folder or contact support. For security, the link works only once, and after three "
    "failed attempts your account is locked for fifteen minutes.",
    "Before servicing the pump, isolate it from the power supply and close the inlet and outlet valves. "
    "Release the residual pressure through the bleed screw. Remove the four M8 bolts holding the motor "
    "housing, lift the impeller assembly and inspect the mechanical seal for cracks or scoring. Replace "
    "the O-rings with new ones lubricated with silicone grease; tighten the bolts crosswise to 25 N·m.",
    "Boundary-layer separation on a swept wing begins near the tip at high angles of attack, where the "
    "spanwise flow thickens the layer. Wind-tunnel tests at Mach 0.8 showed that vortex generators placed "
    "at 20% chord delayed separation by four degrees and reduced buffet. The pressure distributions agree "
    "with a viscous-inviscid interaction method to within the measurement error.",
    "Die Stadt liegt am Ufer eines großen Sees und ist für ihre Altstadt bekannt. La ciudad tiene un "
    "mercado que abre todos los sábados. Le musée présente une collection de peintures du XIXe siècle. "
    "東京は日本の首都です。 Visitors can reach the centre by tram in twenty minutes from the station.",
)

QUERIES: tuple[str, ...] = (
    "how do plants turn light into sugar",
    "Does metformin lower HbA1c in type 2 diabetes?",
    "late rent fee landlord notice period",
    "python retry on timeout with exponential backoff",
    "When did Constantinople fall?",
    "why did the stock go up after earnings",
    "simple pancake recipe",
    "who scored the late winner",
    "I can't log in, how do I reset my password",
    "how to replace the mechanical seal of a centrifugal pump",
    "what causes flow separation at the tip of a swept wing at transonic speed",
    "museum opening hours in the old town",
)
