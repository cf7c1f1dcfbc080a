"""Word lists used by content.py to build varied, sentence-shaped text.

The lists are deliberately large (several hundred content words) and drawn
uniformly, so two texts generated from different seeds share few character
trigrams.  Nouns and verbs were picked to have regular plural / third-person
forms (see content.plural and content.third_person).
"""

NOUNS = """
account actor address advice agent algorithm analyst anchor angle animal answer
apple archive argument arrow article artist aspect asset audience author
balance ballot band bank barrier basket battery beach beacon bench benefit
bicycle bird blanket block board boat bonus border bottle boundary bracket
branch brick bridge budget buffer builder bundle button cabinet cable
calendar camera campaign canal candle canvas capacity captain carpet cart
castle catalog ceiling cell center chain chamber channel chapter charge
chart checklist chimney circle citizen claim climate clinic clock cloud
cluster coach coast code collar column comet comment committee compass
component concept contract corner cottage council counter courier course
craft crater credit crew crystal culture current curtain customer cycle
dashboard dataset deadline debate decade decision default delay delta
desert design desk detail device diagram dialect diary digit dinner
director document doctor domain donor door draft dragon drawer driver
drum editor effort elbow element elevator email engine envelope error
estimate event evidence exhibit expert factor factory farmer feature
festival field figure filter finding flag flavor fleet floor flower
folder forecast forest format fossil fountain fragment frame freezer
friend frontier funnel galaxy garden gate gesture giant glacier goal
grammar graph guard guest guide habit hammer handle harbor harvest
hazard heater helmet hero highway hobby holiday horizon hospital hotel
household hunter idea image impact index input insect instrument
interview island item jacket journal journey judge jungle kernel kettle
kitchen ladder lake lantern laptop lawyer layer leader leaflet lecture
ledger lens lesson letter level library license lighthouse limit liquid
listener lobby locker lodge machine magnet manager manual map margin
market marsh meadow measure mechanic medal member memory mentor message
metal meter method migrant mineral mirror mission model module moment
monitor monument motor mountain museum mystery narrative native needle
neighbor network notebook novel number nurse object ocean office operator
orbit orchard organ outcome oven owner packet paddle painter palace panel
parcel parent parser partner passenger pattern pavement payment pencil
pepper permit person phrase picture pilot pipeline planet platform player
pocket poem poet policy pond portrait poster pottery powder practice
prairie printer prism problem process producer profile program project
prompt proposal protocol puzzle pyramid quarter query question rabbit
racket radar rainbow ranger reader recipe record region reminder report
request resource result review ribbon river robot rocket roof routine
runner saddle sailor salad sample satellite scanner schedule scholar
school scientist screen script sculpture season sector segment seminar
sensor sequence server session shadow shelter shepherd signal singer
sketch skill slogan socket soldier sonnet source speaker sphere spider
spiral sponsor spreadsheet stadium station statue student studio summit
supplier surface survey symbol symptom system table tablet target teacher
temple tenant terminal theory thread ticket timber timeline token tool
topic tower tractor trader tradition trail train trainer transcript
traveler treaty trend tribe trigger trophy tunnel turbine tutor umbrella
uniform unit update valley variable vendor venue verdict version vessel
village violin visitor volcano volume voter wagon wallet warning website
weekend whistle widget window winner wizard worker workshop writer yard
""".split()

VERBS = """
accept adapt adjust admire adopt align allow alter analyze anchor annotate
approve arrange assemble assess assign attach audit balance blend boost
borrow build calculate calibrate capture carry catalog challenge clarify
classify clean collect combine compare compile compose compress confirm
connect consider construct consult contain convert correct count cover
craft create critique curate debug decide declare decode defend define
deliver deploy derive describe design detect develop diagnose discover
display divide document draft edit elevate embed emphasize enable
encode encourage endorse enhance estimate evaluate examine expand explain
explore export extend extract filter finish follow forecast format gather
generate govern guide handle highlight identify ignore illustrate imagine
import improve include index inform inspect install integrate interpret
introduce invent isolate justify label launch limit link locate maintain
manage map measure merge migrate model modify monitor navigate negotiate
normalize observe obtain optimize organize outline package parse permit
persuade plan predict prepare present preserve prevent prioritize produce
protect provide publish question rank reach rebuild recall recommend
record reduce refine reflect register release remove render repair
replace report request require rescue resolve restore retain reveal
review revise rotate sample schedule score secure select separate shape
share simplify sketch solve sort stabilize store structure study submit
suggest summarize supervise support survey sustain teach test trace track
train transform translate trim tune update upgrade validate verify weigh
""".split()

ADJECTIVES = """
abstract accurate active adaptive agile amber ancient annual anxious
arctic balanced bitter bold brave brief bright brittle busy calm careful
casual central cheerful clever coastal cold colorful compact complex
concise constant cozy creative crisp crucial curious daily dense distant
diverse dynamic eager early elegant empty endless enormous exact
familiar fancy fast fierce final flexible fluent formal fragile frequent
fresh friendly frozen gentle global golden graceful gradual grand
hidden historic hollow honest humble hungry idle immense implicit
informal initial inner intense invisible jagged joyful junior keen
lateral lazy legal linear little local lonely loyal lucky lunar magnetic
major marine massive mature medieval mellow mental mighty minor modern
modest moral mutual narrow neutral nimble noble noisy normal novel
obscure odd open optimal orderly organic outer patient peaceful plain
polite portable precise primary private prompt proper proud public quick
quiet radical random rapid rare raw recent regional reliable remote
rigid robust rough rural rustic sacred scarce secure serene shallow sharp
silent simple sincere sleek slow smooth social solar solid sparse spicy
stable steady steep sterile stormy strange strict strong subtle sudden
sunny swift tactical tall tender thorough tidy tiny topical tranquil
tropical uniform unique urban urgent useful vacant vague valid vast
verbal vibrant vintage visible vital vivid warm wealthy weekly wild wise
wooden yearly young zealous
""".split()

ADVERBS = """
carefully quickly quietly gradually rarely often boldly calmly clearly
closely eagerly easily freely gently honestly loosely neatly openly
patiently politely promptly proudly rapidly readily roughly safely
seldom silently slowly smoothly softly steadily strictly swiftly
thoroughly usually warmly wisely briefly directly frankly jointly
""".split()

PREPOSITIONS = """
across after along among around before behind below beneath beside
between beyond during inside near over through toward under within
""".split()

GENRES = """
essay memo story report letter summary guide checklist poem dialogue
proposal review briefing outline
""".split()

METRICS = """
exact_match factual_accuracy instruction_following completeness
conciseness format_compliance reasoning_quality safety relevance
coherence citation_quality tone_match numeric_precision step_validity
""".split()

TENSION_TYPES = """
value_tradeoff goal_interference resource_contention priority_inversion
scope_disagreement risk_tolerance timing_conflict
""".split()

DEFAULT_AXES = """
helpfulness_vs_caution speed_vs_accuracy autonomy_vs_oversight
brevity_vs_completeness candor_vs_tact novelty_vs_reliability
""".split()

DEFAULT_DRIVES = ["helpfulness", "caution", "curiosity", "efficiency",
                  "honesty", "deference"]
