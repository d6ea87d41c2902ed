"""Public-domain English text the benchmark corpus is spoken from (all published before 1929).

Numbers are spelled out, so reference and hypothesis are compared as words, not as digit formats, and nothing is
in brackets or parentheses: Whisper's English normaliser drops such text before scoring.
"""

from __future__ import annotations

# (source, text): one short clip each, about 3 to 28 seconds when spoken.
CLIPS: list[tuple[str, str]] = [
    (
        "gettysburg",
        "Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in "
        "Liberty, and dedicated to the proposition that all men are created equal.",
    ),
    (
        "gettysburg",
        "Now we are engaged in a great civil war, testing whether that nation, or any nation so conceived and so "
        "dedicated, can long endure. We are met on a great battle-field of that war.",
    ),
    ("gettysburg", "It is altogether fitting and proper that we should do this."),
    (
        "gettysburg",
        "But, in a larger sense, we can not dedicate, we can not consecrate, we can not hallow this ground. The "
        "brave men, living and dead, who struggled here, have consecrated it, far above our poor power to add or "
        "detract. The world will little note, nor long remember what we say here, but it can never forget what "
        "they did here.",
    ),
    (
        "gettysburg",
        "That this nation, under God, shall have a new birth of freedom, and that government of the people, by "
        "the people, for the people, shall not perish from the earth.",
    ),
    (
        "declaration",
        "When in the Course of human events, it becomes necessary for one people to dissolve the political bands "
        "which have connected them with another, and to assume among the powers of the earth, the separate and "
        "equal station to which the Laws of Nature and of Nature's God entitle them, a decent respect to the "
        "opinions of mankind requires that they should declare the causes which impel them to the separation.",
    ),
    (
        "declaration",
        "We hold these truths to be self-evident, that all men are created equal, that they are endowed by their "
        "Creator with certain unalienable Rights, that among these are Life, Liberty and the pursuit of Happiness.",
    ),
    (
        "declaration",
        "Prudence, indeed, will dictate that Governments long established should not be changed for light and "
        "transient causes.",
    ),
    (
        "austen",
        "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
        "want of a wife.",
    ),
    (
        "austen",
        "However little known the feelings or views of such a man may be on his first entering a neighbourhood, "
        "this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful "
        "property of some one or other of their daughters.",
    ),
    ("austen", "Mr. Bennet was so odd a mixture of quick parts, sarcastic humour, reserve, and caprice."),
    (
        "austen",
        "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition, seemed to "
        "unite some of the best blessings of existence.",
    ),
    (
        "dickens",
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it "
        "was the season of Darkness, it was the spring of hope, it was the winter of despair.",
    ),
    (
        "dickens",
        "Marley was dead, to begin with. There is no doubt whatever about that.",
    ),
    (
        "dickens",
        "Oh! But he was a tight-fisted hand at the grindstone, Scrooge! A squeezing, wrenching, grasping, "
        "scraping, clutching, covetous, old sinner! Hard and sharp as flint, from which no steel had ever struck "
        "out generous fire; secret, and self-contained, and solitary as an oyster.",
    ),
    ("dickens", "Please, sir, replied Oliver, I want some more."),
    (
        "twain",
        "You don't know about me without you have read a book by the name of The Adventures of Tom Sawyer; but "
        "that ain't no matter. That book was made by Mr. Mark Twain, and he told the truth, mainly.",
    ),
    (
        "twain",
        "Tom appeared on the sidewalk with a bucket of whitewash and a long-handled brush. He surveyed the fence, "
        "and all gladness left him and a deep melancholy settled down upon his spirit.",
    ),
    ("twain", "Always do right. This will gratify some people and astonish the rest."),
    (
        "twain",
        "Work consists of whatever a body is obliged to do, and play consists of whatever a body is not obliged to do.",
    ),
    (
        "melville",
        "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, "
        "and nothing particular to interest me on shore, I thought I would sail about a little and see the "
        "watery part of the world.",
    ),
    (
        "melville",
        "It is a way I have of driving off the spleen and regulating the circulation.",
    ),
    (
        "carroll",
        "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: "
        "once or twice she had peeped into the book her sister was reading, but it had no pictures or "
        "conversations in it, and what is the use of a book, thought Alice, without pictures or conversations?",
    ),
    (
        "carroll",
        "Curiouser and curiouser! cried Alice; she was so much surprised, that for the moment she quite forgot how "
        "to speak good English.",
    ),
    (
        "carroll",
        "The Rabbit actually took a watch out of its waistcoat pocket, and looked at it, and then hurried on.",
    ),
    (
        "doyle",
        "To Sherlock Holmes she is always the woman. I have seldom heard him mention her under any other name. In "
        "his eyes she eclipses and predominates the whole of her sex.",
    ),
    ("doyle", "You see, but you do not observe. The distinction is clear."),
    (
        "bronte",
        "There was no possibility of taking a walk that day. We had been wandering, indeed, in the leafless "
        "shrubbery an hour in the morning; but since dinner the cold winter wind had brought with it clouds so "
        "sombre, and a rain so penetrating, that further outdoor exercise was now out of the question.",
    ),
    (
        "thoreau",
        "I went to the woods because I wished to live deliberately, to front only the essential facts of life, and "
        "see if I could not learn what it had to teach, and not, when I came to die, discover that I had not "
        "lived.",
    ),
    ("thoreau", "The mass of men lead lives of quiet desperation."),
    (
        "aesop",
        "A hungry Fox saw some fine bunches of Grapes hanging from a vine that was trained along a high trellis, "
        "and did his best to reach them by jumping as high as he could into the air. But it was all in vain, for "
        "they were just out of reach: so he gave up trying, and walked away with an air of dignity and "
        "unconcern, remarking, I thought those Grapes were ripe, but I see now they are quite sour.",
    ),
    (
        "aesop",
        "The North Wind and the Sun had a quarrel about which of them was the stronger. While they were disputing "
        "with much heat and bluster, a Traveller passed along the road wrapped in a cloak.",
    ),
    (
        "aesop",
        "A Hare was one day making fun of a Tortoise for being so slow upon his feet. Wait a bit, said the "
        "Tortoise; I'll run a race with you, and I'll wager that I win.",
    ),
    ("aesop", "The race is not always to the swift. Slow and steady wins the race."),
    (
        "aesop",
        "A Shepherd Boy, who tended his flock not far from a village, used to amuse himself at times in crying "
        "out Wolf! Wolf! Twice or thrice his trick succeeded: the whole village came running out to his "
        "assistance, when all the return they got was to be laughed at for their pains.",
    ),
    (
        "aesop",
        "A Lion was asleep in his den one day, when a mischievous Mouse for no reason at all ran across the "
        "outstretched paw and up the royal nose of the King of Beasts, and awoke him from his nap.",
    ),
    (
        "aesop",
        "One bright day in late autumn a family of Ants were bustling about in the warm sunshine, drying out the "
        "grain they had stored up during the summer, when a starving Grasshopper, his fiddle under his arm, came "
        "up and humbly begged for a bite to eat.",
    ),
    ("franklin", "Early to bed and early to rise, makes a man healthy, wealthy, and wise."),
    ("franklin", "Well done is better than well said. An ounce of prevention is worth a pound of cure."),
    (
        "franklin",
        "Lost time is never found again, and what we call time enough, always proves little enough.",
    ),
]

# One continuous recording, spoken sentence by sentence with pauses: Lincoln's second inaugural address (1865).
LONG_NAME = "second-inaugural"
LONG_PARAGRAPHS: list[str] = [
    "Fellow countrymen: At this second appearing to take the oath of the presidential office there is less "
    "occasion for an extended address than there was at the first. Then a statement somewhat in detail of a course "
    "to be pursued seemed fitting and proper. Now, at the expiration of four years, during which public "
    "declarations have been constantly called forth on every point and phase of the great contest which still "
    "absorbs the attention and engrosses the energies of the nation, little that is new could be presented. The "
    "progress of our arms, upon which all else chiefly depends, is as well known to the public as to myself, and it "
    "is, I trust, reasonably satisfactory and encouraging to all. With high hope for the future, no prediction in "
    "regard to it is ventured.",
    "On the occasion corresponding to this four years ago all thoughts were anxiously directed to an impending civil "
    "war. All dreaded it, all sought to avert it. While the inaugural address was being delivered from this place, "
    "devoted altogether to saving the Union without war, insurgent agents were in the city seeking to destroy it "
    "without war, seeking to dissolve the Union and divide effects by negotiation. Both parties deprecated war, but "
    "one of them would make war rather than let the nation survive, and the other would accept war rather than let "
    "it perish, and the war came.",
    "One eighth of the whole population were colored slaves, not distributed generally over the Union, but "
    "localized in the southern part of it. These slaves constituted a peculiar and powerful interest. All knew that "
    "this interest was somehow the cause of the war. To strengthen, perpetuate, and extend this interest was the "
    "object for which the insurgents would rend the Union even by war, while the Government claimed no right to do "
    "more than to restrict the territorial enlargement of it. Neither party expected for the war the magnitude or "
    "the duration which it has already attained. Neither anticipated that the cause of the conflict might cease "
    "with or even before the conflict itself should cease. Each looked for an easier triumph, and a result less "
    "fundamental and astounding. Both read the same Bible and pray to the same God, and each invokes His aid against "
    "the other. It may seem strange that any men should dare to ask a just God's assistance in wringing their bread "
    "from the sweat of other men's faces, but let us judge not, that we be not judged. The prayers of both could "
    "not be answered. That of neither has been answered fully. The Almighty has His own purposes.",
    "Fondly do we hope, fervently do we pray, that this mighty scourge of war may speedily pass away. Yet, if God "
    "wills that it continue until all the wealth piled by the bondsman's two hundred and fifty years of unrequited "
    "toil shall be sunk, and until every drop of blood drawn with the lash shall be paid by another drawn with the "
    "sword, as was said three thousand years ago, so still it must be said that the judgments of the Lord are true "
    "and righteous altogether.",
    "With malice toward none, with charity for all, with firmness in the right as God gives us to see the right, "
    "let us strive on to finish the work we are in, to bind up the nation's wounds, to care for him who shall have "
    "borne the battle and for his widow and his orphan, to do all which may achieve and cherish a just and lasting "
    "peace among ourselves and with all nations.",
]

# The bundled sample (worker/data/jfk.flac), as spoken.
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
