"""Built-in probe corpus: short, fluent English snippets tagged by domain.

Every snippet was written for pytest-hemorrhage. They are deliberately plain
and predictable, so that a healthy small language model assigns them low
perplexity and damage to the model shows up clearly. ``BUILTIN_SNIPPETS``
holds ``(tag, text)`` pairs; ``TAGS`` lists the tags in a fixed order.
"""

from __future__ import annotations

__all__ = ["TAGS", "BUILTIN_SNIPPETS"]

TAGS: tuple[str, ...] = (
    "prose",
    "news",
    "dialogue",
    "code",
    "math",
    "list",
    "instructions",
    "science",
    "qa",
)

_PROSE: tuple[str, ...] = (
    "The old house stood at the end of the lane, half hidden by a row of tall "
    "pine trees. Nobody had lived there for years, but every morning the "
    "children on their way to school would stop at the gate and stare at the "
    "dark windows. Some of them said they had seen a light moving inside after "
    "sunset. Most of the adults laughed at the story, yet none of them ever "
    "walked past the house alone at night.",
    "Maria woke up early on Saturday and made herself a cup of coffee. She sat "
    "by the kitchen window and watched the rain fall on the garden. The week had "
    "been long and tiring, and she was glad to have a quiet day with nothing "
    "planned. After breakfast she read a few chapters of her book, called her "
    "sister, and then took a long walk by the river once the rain had stopped.",
    "The train was late again, so Tom stood on the platform with his hands in "
    "his pockets and watched his breath turn to mist in the cold air. Around him, "
    "other people checked their phones and sighed. When the train finally "
    "arrived, it was so crowded that he had to stand by the door for the whole "
    "journey. He told himself that next year he would find a job closer to home.",
    "It was the kind of summer evening that seems to last forever. The sun hung "
    "low over the fields, turning the wheat to gold, and the air was warm and "
    "still. Somewhere far away a dog was barking. My grandfather sat on the porch "
    "in his favourite chair, and I sat on the step below him, listening to him "
    "talk about the years when he was a young man working on the farm.",
    "The committee met on Tuesday afternoon to review the proposal for the new "
    "library. After a brief presentation by the architect, the members discussed "
    "the cost of the project, the expected number of visitors, and the impact on "
    "local traffic. Several members expressed concern about the budget. In the "
    "end, the committee agreed to ask for a revised plan and to meet again at "
    "the beginning of next month.",
    "She had never seen the sea before. When the bus came over the top of the "
    "hill and the water appeared in front of her, wide and blue and shining in "
    "the sun, she pressed her face against the window and could not say a word. "
    "Her mother smiled and squeezed her hand. That afternoon they walked along "
    "the beach, and she collected shells until her pockets were full.",
    "The city was quiet at four in the morning. The streets were empty, the shops "
    "were closed, and the only sound was the hum of the street lights. A single "
    "taxi drove slowly past the square and turned the corner. In a small bakery "
    "near the station, a man in a white apron was already at work, shaping the "
    "dough for the first loaves of the day.",
    "Peter opened the letter with shaking hands. He had waited for this answer "
    "for almost three months, and now that it had finally arrived, he was afraid "
    "to read it. He unfolded the paper slowly and read the first line twice. Then "
    "he began to laugh. He had been accepted. He ran into the kitchen to tell his "
    "parents, still holding the letter in the air.",
    "The forest was dark and silent after the snow. Every branch was covered in "
    "white, and the path between the trees had almost disappeared. Anna walked "
    "carefully, following the small tracks of a fox that had passed that way "
    "before her. Her boots sank deep into the snow with every step. After an hour "
    "she reached the frozen lake and stopped to rest on a fallen log.",
    "In the spring of that year the rains came early, and the river rose higher "
    "than anyone in the village could remember. The farmers moved their animals "
    "to the hills, and the families who lived closest to the water packed their "
    "belongings into carts. For two weeks the whole valley waited. Then, as "
    "suddenly as it had come, the water went down, leaving mud and broken fences "
    "behind it.",
    "It is a truth that most people learn slowly: the things we worry about at "
    "night rarely look as serious in the morning. A problem that seems impossible "
    "at midnight often turns out to have a simple answer after a good sleep and "
    "a cup of tea. This does not mean that our worries are foolish, only that "
    "tired minds are poor judges of how large a difficulty really is.",
    "My first job was in a small bookshop on the corner of Market Street. The "
    "owner was an old man who knew every book on his shelves and could tell you "
    "where to find it without looking. He paid me very little, but he let me "
    "borrow any book I liked. I spent two happy years there, and I think that is "
    "where my love of reading really began.",
    "The meeting room was too warm, and the presentation had gone on for almost "
    "an hour. Someone at the back of the room was trying very hard not to fall "
    "asleep. On the screen, a chart showed sales rising slowly over the last "
    "three years. When the speaker finally asked if there were any questions, "
    "there was a long silence, and then everyone began to gather their papers "
    "and leave.",
    "The little boat moved slowly across the harbour as the sun went down. The "
    "fisherman pulled in his nets and counted the catch: it had been a good day. "
    "Gulls circled above the boat, crying loudly and waiting for scraps. On the "
    "shore, the lights of the village were coming on one by one, and he could "
    "already smell the smoke from the chimneys of the houses on the hill.",
    "When I was a child, my mother kept a garden behind our house. Every spring "
    "she planted tomatoes, beans, and potatoes, and every summer we ate what we "
    "had grown. I did not always enjoy the work of pulling weeds and carrying "
    "water, but I loved the moment when the first red tomato appeared. Even now, "
    "the smell of a tomato plant takes me straight back to those long summer days.",
    "The castle had been built on a high rock above the river nearly eight "
    "hundred years ago. Its walls were thick and grey, and from the top of the "
    "tower you could see for miles in every direction. Over the centuries it had "
    "been attacked many times, but it had never fallen. Today it is a museum, and "
    "thousands of visitors climb the narrow stairs every summer to enjoy the view.",
    "Sam had always been afraid of dogs, so when his new neighbours moved in with "
    "a large brown dog, he was not pleased. For the first week he crossed the "
    "street whenever he saw it. But the dog was gentle and friendly, and one day "
    "it walked up to him and sat down at his feet. Slowly, Sam reached out and "
    "patted its head. By the end of the summer they were good friends.",
    "The hospital corridor was bright and quiet. Nurses moved from room to room "
    "with calm and careful steps, and somewhere a machine was beeping softly. "
    "James sat on a plastic chair outside his father's room, holding a cup of "
    "coffee that had gone cold an hour ago. He had not slept much, but when the "
    "doctor came out and smiled at him, he felt all his tiredness disappear.",
    "Every Sunday the family gathered at my grandmother's house for lunch. There "
    "was always too much food: roast chicken, potatoes, vegetables from the "
    "garden, and a large apple pie for dessert. The adults talked about work and "
    "politics while the children played in the garden. Those lunches were loud "
    "and long, and I did not know then how much I would miss them.",
    "The road through the mountains was narrow and full of sharp turns. On one "
    "side there was a wall of rock, and on the other a steep drop into the valley "
    "below. Laura drove slowly, holding the wheel tightly with both hands. Her "
    "friend in the passenger seat kept pointing out the beautiful views, but "
    "Laura did not dare to take her eyes off the road for even a second.",
    "The company was founded in a small garage by two friends who had just "
    "finished university. For the first few years they worked long hours for "
    "very little money, building their product and looking for customers. "
    "Gradually the business grew. Today it employs more than two thousand people "
    "in offices around the world, but the founders still like to tell the story "
    "of the garage where it all began.",
    "There was once a king who had three daughters. The eldest was clever, the "
    "second was beautiful, and the youngest was kind. One day the king fell ill, "
    "and the doctors said that only water from a magic well at the end of the "
    "world could save him. The two older sisters refused to go, but the youngest "
    "put on her cloak and set off that very night.",
    "The library was the quietest place in the whole town. Its tall windows let "
    "in the afternoon light, and the long wooden tables were worn smooth by years "
    "of use. Students sat with their heads bent over their books, and the only "
    "sound was the soft turning of pages. I liked to sit in the corner by the "
    "window, where I could look out at the trees when I grew tired of reading.",
    "After the storm, the whole village came out to look at the damage. A large "
    "tree had fallen across the main road, and several houses had lost part of "
    "their roofs. Nobody had been hurt, however, and by midday the neighbours were "
    "working together to clear the road and repair the houses. By evening the "
    "road was open again, and people were sharing soup and bread in the church hall.",
    "He was a quiet man who lived alone with his cat in a small flat above the "
    "post office. Every morning at seven he walked to the park, fed the ducks, and "
    "sat on the same bench to read the newspaper. People in the neighbourhood did "
    "not know much about him, but they all said good morning when they passed, "
    "and he always smiled and raised his hat in reply.",
    "The first day at a new school is never easy. Lucy stood at the door of the "
    "classroom, holding her bag tightly and looking at the rows of faces that "
    "turned to stare at her. The teacher smiled and showed her to an empty desk "
    "near the window. The girl at the next desk whispered hello and offered her a "
    "pencil. By lunchtime, Lucy had already made her first friend.",
)

_NEWS: tuple[str, ...] = (
    "The city council voted on Monday to approve a new budget for the coming "
    "year. The plan includes more money for schools, road repairs, and public "
    "transport, as well as a small increase in local taxes. The mayor said the "
    "budget was a fair balance between the needs of residents and the cost to "
    "taxpayers. Opposition members argued that the tax increase was too high and "
    "promised to raise the issue again next year.",
    "Heavy rain caused flooding in several parts of the region on Tuesday, "
    "forcing hundreds of people to leave their homes. Emergency services worked "
    "through the night to rescue residents who were trapped by rising water. "
    "Officials said that no deaths had been reported, but several roads remain "
    "closed. More rain is expected later this week, and people living near the "
    "river have been told to stay alert.",
    "A new bridge across the river was opened to traffic on Friday after almost "
    "three years of construction. The bridge is expected to reduce travel times "
    "between the two sides of the city by up to twenty minutes during rush hour. "
    "Hundreds of people gathered for the opening ceremony, and the first cars "
    "crossed shortly after noon. The project cost about two hundred million "
    "dollars, slightly more than planned.",
    "The national football team won its final qualifying match on Wednesday "
    "night, securing a place in next summer's tournament. The team scored twice "
    "in the second half after a goalless first half. The coach praised his "
    "players for their patience and hard work. Thousands of fans celebrated in "
    "the streets of the capital until the early hours of the morning.",
    "The central bank announced on Thursday that it would keep interest rates "
    "unchanged for another three months. In a statement, the bank said that "
    "inflation had fallen slightly but remained above its target. Economists "
    "had widely expected the decision. The bank also said it would continue to "
    "watch prices closely and was ready to act if inflation began to rise again.",
    "Scientists at the university have discovered a new species of frog in the "
    "rainforest, according to a report published this week. The small green frog "
    "was found during a survey of the forest last spring. The researchers said "
    "the discovery shows how much remains unknown about the region's wildlife. "
    "They called for stronger protection of the forest, which is threatened by "
    "logging and farming.",
    "The local hospital will open a new children's ward next month, hospital "
    "officials announced on Monday. The ward will have thirty beds, a playroom, "
    "and special rooms where parents can stay overnight. The project was paid for "
    "partly by donations from local families and businesses. The hospital "
    "director said the new ward would make a real difference to young patients "
    "and their families.",
    "Train services between the two cities were cancelled on Saturday after a "
    "power failure on the line. Thousands of passengers were affected, and many "
    "were forced to travel by bus instead. The rail company apologised for the "
    "disruption and said engineers were working to repair the fault. Normal "
    "services are expected to resume on Monday morning.",
    "The number of tourists visiting the country rose by twelve percent last "
    "year, according to figures released by the tourism office on Tuesday. Most "
    "visitors came from neighbouring countries, but there was also strong growth "
    "in travellers from Asia and North America. Hotels and restaurants reported "
    "their best year for a decade. Officials expect the numbers to grow again "
    "this year.",
    "A fire broke out in a warehouse near the harbour late on Sunday evening. "
    "Firefighters spent several hours bringing the fire under control, and thick "
    "smoke could be seen across the city. Nobody was injured. The cause of the "
    "fire is not yet known, and an investigation has begun. The owner of the "
    "warehouse said that most of the goods stored inside had been destroyed.",
    "The government announced plans on Wednesday to build fifty thousand new "
    "homes over the next five years. The housing minister said the plan would "
    "help young families who cannot afford to buy a house. Most of the new homes "
    "will be built near existing towns and cities. Critics said the plan did not "
    "go far enough and that prices would remain too high for many people.",
    "A popular museum in the city centre reopened to the public on Saturday after "
    "a two-year renovation. The building now has larger galleries, a new cafe, "
    "and better access for visitors in wheelchairs. Long queues formed outside the "
    "doors before the museum opened in the morning. The director said she was "
    "delighted by the response and hoped the museum would attract even more "
    "visitors than before.",
    "Shares in the technology company fell sharply on Thursday after it reported "
    "lower profits than expected. The company said that sales of its main "
    "products had slowed during the last three months. Its chief executive told "
    "investors that the company was still growing and would launch several new "
    "products later this year. Other technology shares also fell during the day.",
    "Temperatures reached record highs across much of the country on Tuesday as "
    "a heat wave continued for a fifth day. Health officials advised people to "
    "drink plenty of water, stay out of the sun during the hottest hours, and "
    "check on elderly neighbours. Several cities opened public buildings as cool "
    "places where people could rest. Cooler weather is expected by the weekend.",
    "The school board announced on Friday that all primary schools in the district "
    "will offer free lunches to pupils from next September. The board said the "
    "plan would help families with the rising cost of living and make sure that "
    "every child has at least one healthy meal a day. The cost will be shared "
    "between the local council and the national government.",
    "Police have asked for help from the public after a valuable painting was "
    "stolen from a private gallery on Tuesday night. The thieves entered the "
    "building through a back window and left before the alarm was raised. The "
    "painting, which is about one hundred years old, is said to be worth several "
    "million dollars. Anyone with information is asked to contact the police.",
    "The annual city marathon took place on Sunday, with more than fifteen "
    "thousand runners taking part. The men's race was won in just over two hours "
    "and eight minutes, and the women's race in just under two hours and "
    "twenty-five minutes. Thousands of people lined the streets to cheer the "
    "runners. Organisers said the event had raised over a million dollars for "
    "local charities.",
    "A new study published on Monday suggests that children who read for pleasure "
    "do better at school in all subjects, not only in reading and writing. The "
    "researchers followed more than five thousand children over ten years. They "
    "found that those who read books regularly at home had higher test scores in "
    "maths and science as well. The authors said parents should encourage reading "
    "from an early age.",
    "The airport will build a second runway to cope with the growing number of "
    "flights, the airport's owners confirmed on Wednesday. Work is expected to "
    "begin next year and take about four years to complete. The company said the "
    "new runway would create thousands of jobs. Residents living near the airport "
    "have raised concerns about noise and have promised to oppose the plan.",
    "Farmers in the south of the country are warning of a poor harvest this year "
    "after months of dry weather. Rainfall since the spring has been less than "
    "half the usual amount, and many crops have failed. The farmers' union has "
    "asked the government for emergency support. The agriculture minister said "
    "that help would be offered to the farms that have been hit hardest.",
    "The city's main park will close for three weeks next month so that workers "
    "can repair the paths, replace old benches, and plant new trees. The council "
    "said the work was needed to keep the park safe and attractive for visitors. "
    "The playground and the cafe will remain open during the repairs. The park is "
    "expected to reopen in time for the summer holidays.",
    "A small earthquake shook the coastal town early on Thursday morning, waking "
    "many residents. The quake lasted only a few seconds and caused little damage, "
    "although some windows were broken and a few old walls collapsed. No injuries "
    "were reported. Experts said that small earthquakes are common in the area "
    "and that there was no reason to expect a larger one.",
    "The electric car maker said on Tuesday that it had delivered a record number "
    "of vehicles in the last three months. Deliveries rose by almost thirty "
    "percent compared with the same period last year. The company said demand was "
    "strong in Europe and China. It plans to open a new factory next year to "
    "increase production and reduce waiting times for customers.",
    "Voters in the town will go to the polls next Sunday to choose a new mayor. "
    "Three candidates are standing for the post, and recent surveys suggest that "
    "the race is very close. The main issues in the campaign have been housing, "
    "public transport, and the future of the town centre. Polling stations will "
    "be open from seven in the morning until eight in the evening.",
    "The country's unemployment rate fell to its lowest level in ten years last "
    "month, according to official figures published on Friday. The number of "
    "people out of work dropped by about twenty thousand. Most of the new jobs "
    "were created in health care, retail, and construction. The employment "
    "minister welcomed the figures but said there was still more work to do.",
)

_DIALOGUE: tuple[str, ...] = (
    '"Are you coming to the party tonight?" asked Emma.\n'
    '"I don\'t think so," said Jack. "I have to finish my report for tomorrow."\n'
    '"Oh, come on. It\'s Friday. You can finish it over the weekend."\n'
    '"That\'s what I said last week, and I ended up working all Sunday."\n'
    '"Just come for an hour, then. Everyone will be there, and they all want to see you."\n'
    '"All right," he said with a smile. "One hour, and then I\'m going home."',
    "Waiter: Good evening. Are you ready to order?\n"
    "Customer: Yes, I think so. Could I have the chicken soup to start, please?\n"
    "Waiter: Of course. And for your main course?\n"
    "Customer: I'll have the grilled fish with vegetables.\n"
    "Waiter: Would you like anything to drink?\n"
    "Customer: Just a glass of water, thank you.\n"
    "Waiter: Very good. Your soup will be ready in a few minutes.",
    '"Excuse me, could you tell me how to get to the train station?"\n'
    '"Sure. Go straight down this street until you reach the traffic lights, then '
    'turn left. The station is about five minutes from there, on your right."\n'
    '"Is it far to walk?"\n'
    '"Not really. It takes about ten minutes in total. You could take the bus, but '
    'walking is probably just as quick."\n'
    '"Thank you very much."\n'
    '"You\'re welcome. Have a nice day."',
    "Doctor: So, what seems to be the problem today?\n"
    "Patient: I've had a bad cough for about a week, and I feel tired all the time.\n"
    "Doctor: Do you have a fever?\n"
    "Patient: A little, mostly in the evenings.\n"
    "Doctor: Let me listen to your chest. Take a deep breath, please. Good. It sounds "
    "like a chest infection. I'll give you some medicine, and you should rest for a "
    "few days and drink plenty of water.",
    '"Mum, can I have a dog?" asked Ben.\n'
    '"We\'ve talked about this before," said his mother. "A dog is a lot of work."\n'
    '"I know, but I promise I\'ll walk it every day and feed it too."\n'
    '"Every day, even when it\'s raining?"\n'
    '"Even when it\'s raining."\n'
    '"Let me talk to your father tonight," she said. "If he agrees, we can visit '
    'the animal shelter on Saturday."',
    "Manager: Thanks for coming in. Can you tell me a little about yourself?\n"
    "Candidate: Of course. I studied computer science at university, and for the "
    "last three years I've worked as a software developer at a small company.\n"
    "Manager: Why do you want to leave your current job?\n"
    "Candidate: I enjoy my work, but I'm looking for a bigger team and new "
    "challenges. Your company's projects really interest me.\n"
    "Manager: That's good to hear. Let's talk about your experience in more detail.",
    '"What time does the film start?" asked Sarah.\n'
    '"Seven thirty," said Mark, looking at his phone. "We still have plenty of time."\n'
    '"Should we get something to eat first?"\n'
    '"Good idea. There\'s a nice pizza place next to the cinema."\n'
    '"Perfect. I\'m starving. I haven\'t eaten anything since breakfast."\n'
    '"Then let\'s go now, before it gets too busy."',
    "Customer: Hello, I bought this jacket here last week, but it's too small. "
    "Can I change it for a larger size?\n"
    "Assistant: Of course. Do you have the receipt?\n"
    "Customer: Yes, here it is.\n"
    "Assistant: Thank you. Let me check if we have it in a large. Yes, here you "
    "are. Would you like to try it on first?\n"
    "Customer: Yes, please. Where are the changing rooms?\n"
    "Assistant: Just over there, on the left.",
    '"I can\'t find my keys anywhere," said David.\n'
    '"Did you look in your coat pocket?" asked his wife.\n'
    '"Yes, and in the kitchen, and on the table by the door."\n'
    '"What about the car? You had them when you came home last night."\n'
    '"The car is locked, so they can\'t be in the car."\n'
    '"Then check your other jacket, the blue one."\n'
    'He went upstairs and came back a minute later, holding the keys and looking a little embarrassed.',
    "Teacher: Good morning, everyone. Did you all finish your homework?\n"
    "Student: I did most of it, but I didn't understand the last question.\n"
    "Teacher: That's all right. Which part was difficult?\n"
    "Student: I wasn't sure how to start the second paragraph.\n"
    "Teacher: Let's look at it together after class. For now, please open your "
    "books to page forty-two, and we'll read the next chapter together.",
    '"How was your holiday?" asked Linda.\n'
    '"It was wonderful," said Paul. "The weather was perfect, and the hotel was right next to the beach."\n'
    '"Did you do anything special?"\n'
    '"We took a boat trip to a small island and went swimming every day. The food was amazing too."\n'
    '"It sounds lovely. I\'m so jealous."\n'
    '"You should go next year. I\'ll give you the name of the hotel."',
    "Receptionist: Good afternoon, how can I help you?\n"
    "Guest: Hi, I have a reservation for two nights under the name Johnson.\n"
    "Receptionist: Let me check. Yes, a double room for two nights. Could I see "
    "your passport, please?\n"
    "Guest: Here you are.\n"
    "Receptionist: Thank you. Your room is on the third floor, number 305. "
    "Breakfast is served from seven until ten in the dining room. Enjoy your stay.",
    '"Did you hear the news?" asked Tom.\n'
    '"No, what happened?" said Anna.\n'
    '"Mike and Jenny are getting married in June."\n'
    '"Really? That\'s fantastic! They\'ve been together for so long."\n'
    '"Almost eight years. Everyone thought they would never get around to it."\n'
    '"Well, I\'m very happy for them. We should buy them something nice."\n'
    '"Let\'s ask the others and get them one big present together."',
    "Caller: Hello, I'm calling because my internet has stopped working.\n"
    "Support: I'm sorry to hear that. Can you tell me when the problem started?\n"
    "Caller: About an hour ago. The light on the router is flashing red.\n"
    "Support: Please try turning the router off, waiting thirty seconds, and "
    "turning it back on.\n"
    "Caller: All right, I've done that. The light is green now.\n"
    "Support: Great. Can you try opening a web page?\n"
    "Caller: Yes, it works. Thank you so much.",
    '"Can you help me carry these boxes upstairs?" asked Rachel.\n'
    '"Sure," said her brother. "What\'s in them? They look heavy."\n'
    '"Mostly books. I\'m moving them up to my new room."\n'
    '"You have too many books, you know."\n'
    '"There\'s no such thing as too many books," she said with a laugh.\n'
    '"Tell that to my back," he replied, lifting the first box.',
    "Mechanic: So, what's wrong with the car?\n"
    "Driver: It makes a strange noise when I brake, a kind of high squeak.\n"
    "Mechanic: How long has it been doing that?\n"
    "Driver: About two weeks. It's getting worse.\n"
    "Mechanic: It's probably the brake pads. They might need to be replaced. "
    "Leave it with me, and I'll have a look this afternoon. I'll call you when I "
    "know how much it will cost.",
    '"Are you ready for the exam tomorrow?" asked Olivia.\n'
    '"Not really," said Sam. "I\'ve been studying all week, but there\'s so much to remember."\n'
    '"Do you want to study together tonight? We could test each other."\n'
    '"That would be great. Your place or mine?"\n'
    '"Come to mine at six. I\'ll make some tea, and we can start with the chapters we find hardest."',
    "Grandmother: You've grown so much since I last saw you!\n"
    "Grandson: It's only been six months, Grandma.\n"
    "Grandmother: Six months is a long time when you're ten. How is school?\n"
    "Grandson: It's good. I like science best. We're learning about planets.\n"
    "Grandmother: Planets! When I was your age, we hardly learned anything about "
    "space. You'll have to teach me what you know.",
    '"I think we\'re lost," said Kate, looking at the map.\n'
    '"We\'re not lost," said Joe. "We just don\'t know exactly where we are."\n'
    '"That\'s what lost means."\n'
    '"Look, there\'s a sign up ahead. Let\'s see what it says."\n'
    'They walked a little further. The sign said that the village was three miles away, in the other direction.\n'
    '"Fine," said Joe. "We\'re lost."',
    "Librarian: Can I help you find something?\n"
    "Visitor: Yes, I'm looking for books about the history of the city.\n"
    "Librarian: Those are on the second floor, in the local history section. "
    "Are you looking for anything in particular?\n"
    "Visitor: Something about the old harbour and how it was built.\n"
    "Librarian: We have a very good book on that. Let me write down the number for you.",
    '"What would you like for dinner tonight?" asked Michael.\n'
    '"I don\'t mind. What do we have in the fridge?" said Helen.\n'
    '"Some chicken, a few tomatoes, onions, and half a bag of rice."\n'
    '"We could make a chicken curry."\n'
    '"Good idea. I\'ll start cutting the onions if you cook the rice."\n'
    '"Deal. And I\'ll open a bottle of wine while we wait."',
    "Coach: Good game today, everyone. You played really well in the second half.\n"
    "Player: Thanks, coach. We were pretty nervous at the start.\n"
    "Coach: I could tell. You were passing the ball too quickly. But once you "
    "calmed down, you controlled the game.\n"
    "Player: What should we work on this week?\n"
    "Coach: Defence, mostly. We gave away too many easy chances. Training is at "
    "six on Tuesday. Don't be late.",
    '"Why are you up so early?" asked Jane, coming into the kitchen.\n'
    '"I couldn\'t sleep," said her husband. "I kept thinking about the interview."\n'
    '"You\'ll be fine. You\'ve prepared for weeks."\n'
    '"I know, but what if they ask me something I don\'t know?"\n'
    '"Then you tell them you don\'t know and that you\'d be happy to learn. That\'s an honest answer."\n'
    '"You\'re right," he said, and poured her a cup of coffee.',
    "Passenger: Excuse me, is this seat free?\n"
    "Traveller: Yes, it is. Let me move my bag.\n"
    "Passenger: Thank you. Are you going all the way to London?\n"
    "Traveller: Yes, I'm visiting my daughter. She's just had a baby.\n"
    "Passenger: Congratulations! Is it your first grandchild?\n"
    "Traveller: It is. I've been looking forward to this trip for months. I've "
    "even brought a little blanket that I made myself.",
    '"Do you know how to fix a bicycle chain?" asked Leo.\n'
    '"A little," said his neighbour. "What happened?"\n'
    '"It came off while I was riding home, and now I can\'t get it back on."\n'
    '"Bring it over. Usually you just need to put the chain on the small gear first '
    'and then turn the pedals slowly."\n'
    '"That sounds easy."\n'
    '"It is, once you\'ve done it a few times. Your hands will get dirty, though."',
)

_CODE: tuple[str, ...] = (
    "def average(numbers):\n"
    '    """Return the average of a list of numbers, or 0 for an empty list."""\n'
    "    if not numbers:\n"
    "        return 0\n"
    "    return sum(numbers) / len(numbers)\n"
    "\n"
    "\n"
    "scores = [82, 91, 77, 68, 95]\n"
    'print("The average score is", average(scores))\n'
    "# The average score is 82.6",
    "def is_prime(n):\n"
    "    if n < 2:\n"
    "        return False\n"
    "    for i in range(2, int(n ** 0.5) + 1):\n"
    "        if n % i == 0:\n"
    "            return False\n"
    "    return True\n"
    "\n"
    "\n"
    "primes = [n for n in range(1, 30) if is_prime(n)]\n"
    "print(primes)  # [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]",
    "import json\n"
    "\n"
    "\n"
    "def load_config(path):\n"
    '    """Read a JSON settings file and fill in the default values."""\n'
    "    with open(path) as f:\n"
    "        config = json.load(f)\n"
    '    config.setdefault("debug", False)\n'
    '    config.setdefault("host", "localhost")\n'
    '    config.setdefault("port", 8080)\n'
    '    config.setdefault("workers", 4)\n'
    "    return config\n"
    "\n"
    "\n"
    'config = load_config("settings.json")\n'
    "print(f\"Starting server on {config['host']} port {config['port']}\")",
    "class Stack:\n"
    '    """A simple last-in, first-out stack built on a Python list."""\n'
    "\n"
    "    def __init__(self):\n"
    "        self.items = []\n"
    "\n"
    "    def push(self, item):\n"
    "        self.items.append(item)\n"
    "\n"
    "    def pop(self):\n"
    "        if not self.items:\n"
    '            raise IndexError("pop from empty stack")\n'
    "        return self.items.pop()\n"
    "\n"
    "    def peek(self):\n"
    "        return self.items[-1] if self.items else None\n"
    "\n"
    "    def __len__(self):\n"
    "        return len(self.items)",
    "def count_words(text):\n"
    '    """Count how many times each word appears in the text."""\n'
    "    counts = {}\n"
    "    for word in text.lower().split():\n"
    "        counts[word] = counts.get(word, 0) + 1\n"
    "    return counts\n"
    "\n"
    "\n"
    'text = "the cat and the dog and the bird"\n'
    "for word, count in sorted(count_words(text).items()):\n"
    "    print(word, count)\n"
    "# and 2, bird 1, cat 1, dog 1, the 3",
    "from pathlib import Path\n"
    "\n"
    "\n"
    "def find_large_files(folder, min_size=1_000_000):\n"
    '    """Yield every file under folder that is larger than min_size bytes."""\n'
    '    for path in Path(folder).rglob("*"):\n'
    "        if path.is_file() and path.stat().st_size > min_size:\n"
    "            yield path\n"
    "\n"
    "\n"
    "# Print the large files in the current folder, biggest first.\n"
    'files = sorted(find_large_files("."), key=lambda p: p.stat().st_size, reverse=True)\n'
    "for path in files:\n"
    "    print(path, path.stat().st_size)",
    "def fibonacci(n):\n"
    '    """Return a list with the first n Fibonacci numbers."""\n'
    "    result = []\n"
    "    a, b = 0, 1\n"
    "    for _ in range(n):\n"
    "        result.append(a)\n"
    "        a, b = b, a + b\n"
    "    return result\n"
    "\n"
    "\n"
    "print(fibonacci(10))  # [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]",
    "import csv\n"
    "\n"
    "# Add up the amount column of a CSV file and count the rows.\n"
    "total = 0\n"
    "rows = 0\n"
    'with open("sales.csv", newline="") as f:\n'
    "    reader = csv.DictReader(f)\n"
    "    for row in reader:\n"
    '        total += float(row["amount"])\n'
    "        rows += 1\n"
    "\n"
    'print(f"Total sales: {total:.2f} from {rows} orders")\n'
    'print(f"Average order: {total / rows:.2f}" if rows else "No orders found")',
    "// Return a friendly greeting for the given name.\n"
    "function greet(name) {\n"
    "  if (!name) {\n"
    '    return "Hello, stranger!";\n'
    "  }\n"
    "  return `Hello, ${name}!`;\n"
    "}\n"
    "\n"
    'const names = ["Alice", "Bob", ""];\n'
    "for (const name of names) {\n"
    "  console.log(greet(name));\n"
    "}\n"
    "// Hello, Alice!\n"
    "// Hello, Bob!\n"
    "// Hello, stranger!",
    "const numbers = [4, 8, 15, 16, 23, 42];\n"
    "\n"
    "const evens = numbers.filter((n) => n % 2 === 0);\n"
    "const doubled = numbers.map((n) => n * 2);\n"
    "const total = numbers.reduce((sum, n) => sum + n, 0);\n"
    "\n"
    'console.log("Even numbers:", evens);\n'
    'console.log("Doubled:", doubled);\n'
    'console.log("Total:", total);',
    "// Load a user from the server and print their name.\n"
    "async function getUser(id) {\n"
    "  const response = await fetch(`/api/users/${id}`);\n"
    "  if (!response.ok) {\n"
    "    throw new Error(`Request failed with status ${response.status}`);\n"
    "  }\n"
    "  return response.json();\n"
    "}\n"
    "\n"
    "getUser(42)\n"
    "  .then((user) => console.log(user.name))\n"
    '  .catch((error) => console.error("Could not load the user:", error));',
    'const button = document.getElementById("submit");\n'
    'const input = document.getElementById("email");\n'
    "\n"
    "// Check the email address before the form is sent.\n"
    'button.addEventListener("click", (event) => {\n'
    "  event.preventDefault();\n"
    '  if (!input.value.includes("@")) {\n'
    '    alert("Please enter a valid email address.");\n'
    "    return;\n"
    "  }\n"
    '  console.log("Sending the form for", input.value);\n'
    "});",
    "class Counter {\n"
    "  constructor(start = 0) {\n"
    "    this.value = start;\n"
    "  }\n"
    "\n"
    "  increment() {\n"
    "    this.value += 1;\n"
    "    return this.value;\n"
    "  }\n"
    "\n"
    "  decrement() {\n"
    "    this.value -= 1;\n"
    "    return this.value;\n"
    "  }\n"
    "\n"
    "  reset() {\n"
    "    this.value = 0;\n"
    "  }\n"
    "}\n"
    "\n"
    "const counter = new Counter();\n"
    "counter.increment();\n"
    "counter.increment();\n"
    "console.log(counter.value); // 2",
    "// Wait until the user stops resizing the window before doing any work.\n"
    "function debounce(fn, delay) {\n"
    "  let timer = null;\n"
    "  return function (...args) {\n"
    "    clearTimeout(timer);\n"
    "    timer = setTimeout(() => fn.apply(this, args), delay);\n"
    "  };\n"
    "}\n"
    "\n"
    "const onResize = debounce(() => {\n"
    '  console.log("Window resized to", window.innerWidth);\n'
    "}, 200);\n"
    'window.addEventListener("resize", onResize);',
    "-- Find the ten customers who spent the most this year.\n"
    "-- Only customers with more than five orders are included.\n"
    "SELECT customer_id, COUNT(*) AS order_count, SUM(total) AS total_spent\n"
    "FROM orders\n"
    "WHERE order_date >= '2023-01-01'\n"
    "GROUP BY customer_id\n"
    "HAVING COUNT(*) > 5\n"
    "ORDER BY total_spent DESC\n"
    "LIMIT 10;",
    "CREATE TABLE employees (\n"
    "    id INTEGER PRIMARY KEY,\n"
    "    name TEXT NOT NULL,\n"
    "    department TEXT NOT NULL,\n"
    "    salary INTEGER,\n"
    "    hired_on DATE,\n"
    "    manager_id INTEGER REFERENCES employees (id)\n"
    ");\n"
    "\n"
    "INSERT INTO employees (name, department, salary, hired_on)\n"
    "VALUES ('Alice Smith', 'Engineering', 85000, '2021-03-15'),\n"
    "       ('Bob Jones', 'Sales', 62000, '2022-07-01');",
    "-- List everyone in the sales department, then give them a raise.\n"
    "SELECT e.name, d.name AS department\n"
    "FROM employees AS e\n"
    "JOIN departments AS d ON e.department_id = d.id\n"
    "WHERE d.name = 'Sales'\n"
    "ORDER BY e.name;\n"
    "\n"
    "UPDATE employees\n"
    "SET salary = salary * 1.05\n"
    "WHERE department_id = 3;",
    "SELECT product_name, price\n"
    "FROM products\n"
    "WHERE price > (SELECT AVG(price) FROM products)\n"
    "ORDER BY price DESC;\n"
    "\n"
    "DELETE FROM products\n"
    "WHERE stock = 0 AND discontinued = TRUE;\n"
    "\n"
    "SELECT category, MIN(price) AS cheapest, MAX(price) AS most_expensive\n"
    "FROM products\n"
    "GROUP BY category;",
    "#!/bin/bash\n"
    "# Back up the documents folder with today's date in the file name.\n"
    "# Stop at the first error instead of carrying on with a broken backup.\n"
    "set -euo pipefail\n"
    "\n"
    'SOURCE="$HOME/Documents"\n'
    'DEST="/mnt/backup"\n'
    'DATE=$(date +%Y-%m-%d)\n'
    "\n"
    'mkdir -p "$DEST"\n'
    'tar -czf "$DEST/documents-$DATE.tar.gz" "$SOURCE"\n'
    'echo "Backup saved to $DEST/documents-$DATE.tar.gz"\n'
    "# Keep only the seven most recent backups.\n"
    'ls -t "$DEST"/documents-*.tar.gz | tail -n +8 | xargs -r rm --',
    "#!/bin/sh\n"
    "# Print the ten largest files in the current folder and everything below it.\n"
    "find . -type f -exec du -h {} + | sort -rh | head -n 10\n"
    "\n"
    "# Count the lines in every Python file.\n"
    "find . -name '*.py' | xargs wc -l | tail -n 1\n"
    "\n"
    "# Show how much disk space is still free on the main drive.\n"
    "# The -h flag prints sizes in a form that is easy to read.\n"
    "df -h /",
    "# Report the number of lines in each text file.\n"
    "for file in *.txt; do\n"
    '    if [ -s "$file" ]; then\n'
    '        echo "$file has $(wc -l < "$file") lines"\n'
    "    else\n"
    '        echo "$file is empty"\n'
    "    fi\n"
    "done\n"
    "\n"
    'mkdir -p archive && mv *.log archive/ 2>/dev/null || echo "no log files to move"',
    "# Save your changes and start work on a new branch.\n"
    "$ git status\n"
    "$ git add README.md src/main.py\n"
    '$ git commit -m "Fix the typo in the installation guide"\n'
    "$ git push origin main\n"
    "$ git log --oneline -n 5\n"
    "$ git checkout -b feature/login-page\n"
    "$ git diff main --stat",
    "# Create a virtual environment, install the project and run the tests.\n"
    "# Run these commands from the root folder of the project.\n"
    "python -m venv .venv\n"
    "source .venv/bin/activate\n"
    "pip install --upgrade pip\n"
    "pip install -r requirements.txt\n"
    "python -m pytest tests/ -q\n"
    'echo "All tests finished with exit code $?"\n'
    "deactivate",
    "import time\n"
    "\n"
    "\n"
    "def timed(func):\n"
    '    """Print how long each call to func takes."""\n'
    "    def wrapper(*args, **kwargs):\n"
    "        # Measure the wall-clock time around the call.\n"
    "        start = time.perf_counter()\n"
    "        result = func(*args, **kwargs)\n"
    "        elapsed = time.perf_counter() - start\n"
    '        print(f"{func.__name__} took {elapsed:.3f} seconds")\n'
    "        return result\n"
    "    return wrapper",
    "from dataclasses import dataclass\n"
    "\n"
    "\n"
    "@dataclass\n"
    "class Point:\n"
    "    x: float\n"
    "    y: float\n"
    "\n"
    "    def distance_to(self, other):\n"
    '        """Return the straight-line distance to another point."""\n'
    "        return ((self.x - other.x) ** 2 + (self.y - other.y) ** 2) ** 0.5\n"
    "\n"
    "\n"
    "a = Point(0, 0)\n"
    "b = Point(3, 4)\n"
    "print(a.distance_to(b))  # 5.0",
    "def binary_search(items, target):\n"
    '    """Return the index of target in the sorted list items, or -1."""\n'
    "    low, high = 0, len(items) - 1\n"
    "    while low <= high:\n"
    "        mid = (low + high) // 2\n"
    "        if items[mid] == target:\n"
    "            return mid\n"
    "        if items[mid] < target:\n"
    "            low = mid + 1\n"
    "        else:\n"
    "            high = mid - 1\n"
    "    return -1",
)

_MATH: tuple[str, ...] = (
    "Let us practise some simple addition. 12 + 7 = 19. 25 + 25 = 50. "
    "40 + 13 = 53. 100 + 250 = 350. When we add two numbers, the order does not "
    "matter, so 8 + 5 = 13 and 5 + 8 = 13 as well. This is called the "
    "commutative property of addition. Adding zero to any number leaves it "
    "unchanged, so 42 + 0 = 42.",
    "Subtraction is the opposite of addition. If 9 + 6 = 15, then 15 - 6 = 9 and "
    "15 - 9 = 6. Here are a few more examples: 20 - 8 = 12, 50 - 15 = 35, and "
    "100 - 1 = 99. Unlike addition, the order matters in subtraction: 10 - 3 = 7, "
    "but 3 - 10 = -7, which is a negative number.",
    "Multiplication is repeated addition. For example, 4 x 3 means adding four "
    "three times: 4 + 4 + 4 = 12, so 4 x 3 = 12. Some other facts worth "
    "remembering are 6 x 7 = 42, 8 x 8 = 64, 9 x 5 = 45, and 12 x 12 = 144. Any "
    "number multiplied by one stays the same, and any number multiplied by zero "
    "is zero.",
    "Division splits a number into equal parts. If we share 20 apples equally "
    "among 4 children, each child gets 20 / 4 = 5 apples. Other examples are "
    "36 / 6 = 6, 81 / 9 = 9, and 100 / 25 = 4. When a number does not divide "
    "evenly, there is a remainder: 17 divided by 5 is 3 with a remainder of 2, "
    "because 5 x 3 = 15 and 17 - 15 = 2.",
    "Sarah has 24 stickers. She gives 9 stickers to her brother and then buys 15 "
    "more at the shop. How many stickers does she have now? First, 24 - 9 = 15. "
    "Then 15 + 15 = 30. So Sarah has 30 stickers. We can check the answer by "
    "working backwards: 30 - 15 = 15, and 15 + 9 = 24, which is where she started.",
    "A train travels at 80 kilometres per hour. How far does it travel in 3 hours? "
    "Distance equals speed multiplied by time, so the distance is 80 x 3 = 240 "
    "kilometres. If the train needs to travel 400 kilometres, the journey will "
    "take 400 / 80 = 5 hours. At the same speed, half an hour of travel covers "
    "40 kilometres.",
    "To find the area of a rectangle, multiply its length by its width. A room "
    "that is 5 metres long and 4 metres wide has an area of 5 x 4 = 20 square "
    "metres. The perimeter is the distance around the edge: 5 + 4 + 5 + 4 = 18 "
    "metres. If carpet costs 12 dollars per square metre, covering the floor will "
    "cost 20 x 12 = 240 dollars.",
    "A percentage is a fraction of one hundred. Ten percent of 200 is 20, because "
    "200 / 10 = 20. Twenty-five percent of 80 is 20, because 80 / 4 = 20. If a "
    "jacket costs 60 dollars and is on sale for 20 percent off, the discount is "
    "60 x 0.2 = 12 dollars, so the sale price is 60 - 12 = 48 dollars.",
    "Fractions describe parts of a whole. One half plus one quarter equals three "
    "quarters, because 1/2 = 2/4 and 2/4 + 1/4 = 3/4. To multiply fractions, "
    "multiply the tops and the bottoms: 2/3 x 3/4 = 6/12, which simplifies to "
    "1/2. To compare 3/5 and 2/3, write both with the same denominator: "
    "9/15 and 10/15, so 2/3 is larger.",
    "Tom buys 3 notebooks at 2 dollars each and 2 pens at 1 dollar and 50 cents "
    "each. How much does he spend? The notebooks cost 3 x 2 = 6 dollars, and the "
    "pens cost 2 x 1.50 = 3 dollars. In total he spends 6 + 3 = 9 dollars. If he "
    "pays with a 20 dollar note, his change is 20 - 9 = 11 dollars.",
    "The average of a set of numbers is their sum divided by how many there are. "
    "Take the numbers 4, 8, 6, 10, and 12. Their sum is 4 + 8 + 6 + 10 + 12 = 40. "
    "There are 5 numbers, so the average is 40 / 5 = 8. If we add the number 14 "
    "to the set, the sum becomes 54 and the average becomes 54 / 6 = 9.",
    "Squares and square roots go together. The square of 3 is 3 x 3 = 9, the "
    "square of 7 is 49, and the square of 10 is 100. The square root reverses "
    "this: the square root of 49 is 7, and the square root of 144 is 12. The "
    "first few perfect squares are 1, 4, 9, 16, 25, 36, 49, 64, 81, and 100.",
    "A baker makes 48 cupcakes and puts them into boxes of 6. How many boxes does "
    "she need? We divide: 48 / 6 = 8 boxes. She sells each box for 9 dollars. If "
    "she sells all the boxes, she earns 8 x 9 = 72 dollars. The ingredients cost "
    "her 30 dollars, so her profit is 72 - 30 = 42 dollars.",
    "The order of operations tells us which part of a calculation to do first. "
    "Brackets come first, then multiplication and division, then addition and "
    "subtraction. For example, 2 + 3 x 4 = 2 + 12 = 14, not 20. But "
    "(2 + 3) x 4 = 5 x 4 = 20. Similarly, 10 - 6 / 2 = 10 - 3 = 7.",
    "To solve the equation x + 5 = 12, subtract 5 from both sides: x = 12 - 5, "
    "so x = 7. To solve 3x = 21, divide both sides by 3: x = 21 / 3 = 7. For a "
    "slightly harder example, take 2x + 4 = 18. First subtract 4 to get 2x = 14, "
    "then divide by 2 to get x = 7. We can check: 2 x 7 + 4 = 18.",
    "A class has 30 students. Two thirds of them walk to school, and the rest "
    "come by bus. How many take the bus? One third of 30 is 30 / 3 = 10, so two "
    "thirds is 20. That means 20 students walk and 30 - 20 = 10 students take "
    "the bus. If half of the bus riders live in the same village, that is 5 "
    "students.",
    "Counting in twos gives the even numbers: 2, 4, 6, 8, 10, 12, 14, 16, 18, 20. "
    "Counting in fives gives 5, 10, 15, 20, 25, 30, 35, 40, 45, 50. Counting in "
    "tens gives 10, 20, 30, 40, 50, 60, 70, 80, 90, 100. Notice that every "
    "multiple of ten is also a multiple of two and a multiple of five, because "
    "10 = 2 x 5.",
    "A recipe for 4 people needs 200 grams of flour, 2 eggs, and 300 millilitres "
    "of milk. How much do we need for 6 people? We multiply each amount by 6 / 4, "
    "which is 1.5. So we need 200 x 1.5 = 300 grams of flour, 2 x 1.5 = 3 eggs, "
    "and 300 x 1.5 = 450 millilitres of milk.",
    "There are 60 seconds in a minute, 60 minutes in an hour, and 24 hours in a "
    "day. So there are 60 x 60 = 3600 seconds in an hour, and 24 x 60 = 1440 "
    "minutes in a day. A week has 7 days, which is 7 x 24 = 168 hours. A normal "
    "year has 365 days, and a leap year has 366.",
    "Anna saves 15 dollars every week. How long will it take her to save 180 "
    "dollars for a new bicycle? We divide the total by the weekly amount: "
    "180 / 15 = 12 weeks. If she saves 20 dollars a week instead, it will take "
    "180 / 20 = 9 weeks, which is 3 weeks sooner.",
    "The perimeter of a square is four times the length of one side. A square "
    "with sides of 6 centimetres has a perimeter of 4 x 6 = 24 centimetres and an "
    "area of 6 x 6 = 36 square centimetres. If we double the side to 12 "
    "centimetres, the perimeter doubles to 48 centimetres, but the area grows "
    "four times, to 144 square centimetres.",
    "Negative numbers are less than zero. On a number line they sit to the left "
    "of zero. Adding a negative number is the same as subtracting: 7 + (-3) = 4. "
    "Subtracting a negative number is the same as adding: 7 - (-3) = 10. When we "
    "multiply two negative numbers, the answer is positive, so -4 x -5 = 20.",
    "A shop sells apples at 3 for 1 dollar. How much do 12 apples cost? Twelve "
    "apples are 4 groups of 3, because 12 / 3 = 4. So they cost 4 x 1 = 4 "
    "dollars. If the price rises to 3 for 1 dollar and 20 cents, the same apples "
    "will cost 4 x 1.20 = 4 dollars and 80 cents.",
    "The temperature at six in the morning was 4 degrees. By noon it had risen by "
    "9 degrees, so it was 4 + 9 = 13 degrees. In the evening it fell by 11 "
    "degrees, to 13 - 11 = 2 degrees. During the night it dropped another 5 "
    "degrees, so by midnight the temperature was 2 - 5 = -3 degrees.",
    "A school trip costs 15 dollars per student for the bus and 8 dollars per "
    "student for the museum ticket. There are 25 students in the class. The total "
    "cost per student is 15 + 8 = 23 dollars, and for the whole class it is "
    "23 x 25 = 575 dollars. If the school pays 175 dollars, the parents must pay "
    "575 - 175 = 400 dollars in total, or 16 dollars each.",
)

_LIST: tuple[str, ...] = (
    "Shopping list for the week:\n"
    "- a loaf of brown bread\n"
    "- two litres of milk\n"
    "- a dozen eggs\n"
    "- a bag of apples\n"
    "- onions, carrots, and potatoes\n"
    "- a packet of rice\n"
    "- chicken breasts for Tuesday\n"
    "- coffee and tea\n"
    "- washing-up liquid\n"
    "- toilet paper\n"
    "Remember to bring the reusable bags and check whether the shop has any "
    "fresh fish on special offer.",
    "Simple pancakes (makes about eight)\n"
    "Ingredients:\n"
    "- 100 grams of plain flour\n"
    "- 2 large eggs\n"
    "- 300 millilitres of milk\n"
    "- a pinch of salt\n"
    "- butter for the pan\n"
    "Method:\n"
    "1. Mix the flour and salt in a large bowl.\n"
    "2. Add the eggs and half the milk, and whisk until smooth.\n"
    "3. Slowly whisk in the rest of the milk.\n"
    "4. Heat a little butter in a frying pan.\n"
    "5. Pour in a small amount of batter and cook for one minute on each side.",
    "Things to pack for a weekend camping trip:\n"
    "1. Tent, poles, and pegs\n"
    "2. Sleeping bag and a sleeping mat\n"
    "3. A torch with spare batteries\n"
    "4. Warm clothes and a waterproof jacket\n"
    "5. A small stove, a pan, and matches\n"
    "6. Enough food and water for two days\n"
    "7. A first aid kit\n"
    "8. A map of the area\n"
    "9. Sun cream and insect repellent\n"
    "10. Rubbish bags, so you can take everything home with you",
    "Tomato soup\n"
    "Ingredients:\n"
    "- 1 kilogram of ripe tomatoes\n"
    "- 1 onion, chopped\n"
    "- 2 cloves of garlic\n"
    "- 500 millilitres of vegetable stock\n"
    "- 2 tablespoons of olive oil\n"
    "- salt, pepper, and fresh basil\n"
    "Steps:\n"
    "1. Fry the onion and garlic in the oil until soft.\n"
    "2. Add the chopped tomatoes and cook for ten minutes.\n"
    "3. Pour in the stock and simmer for twenty minutes.\n"
    "4. Blend until smooth, season, and serve with basil.",
    "The planets of the solar system, in order from the sun:\n"
    "1. Mercury, the smallest planet\n"
    "2. Venus, the hottest planet\n"
    "3. Earth, our home\n"
    "4. Mars, the red planet\n"
    "5. Jupiter, the largest planet\n"
    "6. Saturn, famous for its rings\n"
    "7. Uranus, which spins on its side\n"
    "8. Neptune, the windiest planet\n"
    "The first four are small and rocky, while the outer four are giant worlds "
    "made mostly of gas and ice.",
    "Morning routine:\n"
    "- Wake up at half past six.\n"
    "- Drink a glass of water.\n"
    "- Do ten minutes of stretching.\n"
    "- Take a shower and get dressed.\n"
    "- Eat breakfast: porridge with fruit and a cup of tea.\n"
    "- Check the calendar for today's meetings.\n"
    "- Pack lunch and a bottle of water.\n"
    "- Leave the house by quarter to eight.\n"
    "- Walk to the station and catch the 8:05 train.",
    "Tips for a good night's sleep:\n"
    "1. Go to bed and wake up at the same time every day.\n"
    "2. Keep your bedroom cool, dark, and quiet.\n"
    "3. Avoid coffee and tea in the afternoon and evening.\n"
    "4. Put your phone away at least an hour before bed.\n"
    "5. Do not eat a large meal late at night.\n"
    "6. Get some exercise during the day, but not just before bedtime.\n"
    "7. If you cannot sleep, get up and read for a while.",
    "Classic chocolate chip cookies\n"
    "You will need:\n"
    "- 125 grams of soft butter\n"
    "- 100 grams of brown sugar\n"
    "- 50 grams of white sugar\n"
    "- 1 egg\n"
    "- 1 teaspoon of vanilla\n"
    "- 200 grams of flour\n"
    "- half a teaspoon of baking soda\n"
    "- 150 grams of chocolate chips\n"
    "Beat the butter and sugars, add the egg and vanilla, then stir in the flour, "
    "baking soda, and chocolate. Bake spoonfuls at 180 degrees for ten to twelve "
    "minutes.",
    "Before you leave for a long holiday:\n"
    "- Check that your passport is still valid.\n"
    "- Print or save your tickets and hotel bookings.\n"
    "- Tell your bank that you will be travelling.\n"
    "- Ask a neighbour to collect your post.\n"
    "- Water the plants and empty the fridge.\n"
    "- Unplug the television and computer.\n"
    "- Close and lock all the windows.\n"
    "- Take out the rubbish.\n"
    "- Turn the heating down.\n"
    "- Lock the front door and check it twice.",
    "The days of the week and what happens on each:\n"
    "- Monday: team meeting at nine\n"
    "- Tuesday: swimming lesson after work\n"
    "- Wednesday: dinner with Sarah and Tom\n"
    "- Thursday: piano practice\n"
    "- Friday: finish the monthly report\n"
    "- Saturday: clean the house and go to the market\n"
    "- Sunday: lunch with the family and a long walk in the park",
    "Basic first aid kit contents:\n"
    "1. Plasters in several sizes\n"
    "2. Sterile gauze pads\n"
    "3. A roll of bandage\n"
    "4. Medical tape\n"
    "5. Antiseptic wipes\n"
    "6. A pair of small scissors\n"
    "7. Tweezers\n"
    "8. Disposable gloves\n"
    "9. Pain relief tablets\n"
    "10. A thermometer\n"
    "Check the kit every few months and replace anything that has been used or "
    "has passed its expiry date.",
    "Vegetable stir fry for two\n"
    "Ingredients:\n"
    "- 1 red pepper, sliced\n"
    "- 1 carrot, cut into thin strips\n"
    "- a handful of broccoli\n"
    "- 100 grams of mushrooms\n"
    "- 2 spring onions\n"
    "- 2 tablespoons of soy sauce\n"
    "- 1 tablespoon of oil\n"
    "Method:\n"
    "1. Heat the oil in a wok until very hot.\n"
    "2. Add the carrot and broccoli and fry for three minutes.\n"
    "3. Add the pepper, mushrooms, and onions.\n"
    "4. Stir in the soy sauce and serve with rice.",
    "Ways to save money at home:\n"
    "- Turn off lights when you leave a room.\n"
    "- Cook at home instead of eating out.\n"
    "- Make a shopping list and stick to it.\n"
    "- Buy fruit and vegetables that are in season.\n"
    "- Cancel subscriptions you no longer use.\n"
    "- Wash clothes at a lower temperature.\n"
    "- Compare prices before buying anything expensive.\n"
    "- Repair things before replacing them.\n"
    "- Set aside a small amount of money every month.",
    "The seven continents, from largest to smallest:\n"
    "1. Asia\n"
    "2. Africa\n"
    "3. North America\n"
    "4. South America\n"
    "5. Antarctica\n"
    "6. Europe\n"
    "7. Australia\n"
    "Asia is home to more than half of the people in the world, while Antarctica "
    "has no permanent population at all. Australia is sometimes counted together "
    "with the nearby islands as a region called Oceania.",
    "Packing list for a beach holiday:\n"
    "- swimsuit and a beach towel\n"
    "- sunglasses and a hat\n"
    "- sun cream with a high protection factor\n"
    "- light cotton shirts and shorts\n"
    "- sandals and a pair of comfortable walking shoes\n"
    "- a good book or two\n"
    "- a reusable water bottle\n"
    "- a small first aid kit\n"
    "- phone charger and headphones\n"
    "- a light jacket for cool evenings",
    "Banana bread\n"
    "Ingredients:\n"
    "- 3 ripe bananas\n"
    "- 75 grams of melted butter\n"
    "- 150 grams of sugar\n"
    "- 1 egg, beaten\n"
    "- 1 teaspoon of baking soda\n"
    "- 200 grams of flour\n"
    "- a pinch of salt\n"
    "Steps:\n"
    "1. Heat the oven to 175 degrees.\n"
    "2. Mash the bananas in a bowl and stir in the butter.\n"
    "3. Mix in the sugar, egg, baking soda, and salt.\n"
    "4. Fold in the flour.\n"
    "5. Pour into a tin and bake for one hour.",
    "Common signs of a cold:\n"
    "- a runny or blocked nose\n"
    "- sneezing\n"
    "- a sore throat\n"
    "- a mild cough\n"
    "- feeling tired\n"
    "- a slight headache\n"
    "What helps:\n"
    "1. Rest as much as you can.\n"
    "2. Drink plenty of warm drinks and water.\n"
    "3. Eat simple, healthy meals.\n"
    "4. Wash your hands often so you do not pass it on.\n"
    "Most colds get better on their own within a week.",
    "Jobs to do in the garden in spring:\n"
    "1. Clear away dead leaves and branches.\n"
    "2. Cut back old growth on shrubs and perennials.\n"
    "3. Dig over the vegetable beds and add compost.\n"
    "4. Sow seeds for lettuce, carrots, and peas.\n"
    "5. Plant summer flowering bulbs.\n"
    "6. Mow the lawn for the first time when the grass starts growing.\n"
    "7. Clean the garden furniture.\n"
    "8. Check fences and repair any damage from the winter.",
    "Office supplies to order this month:\n"
    "- five boxes of printer paper\n"
    "- black and colour ink cartridges\n"
    "- two packs of blue pens\n"
    "- sticky notes in several colours\n"
    "- a new stapler and staples\n"
    "- twenty ring binders\n"
    "- a whiteboard and markers for the meeting room\n"
    "- coffee, tea, milk, and sugar for the kitchen\n"
    "- paper cups and napkins\n"
    "Please send any other requests to the office manager by Friday.",
    "Greek salad\n"
    "Ingredients:\n"
    "- 4 ripe tomatoes, cut into wedges\n"
    "- 1 cucumber, sliced\n"
    "- 1 small red onion, thinly sliced\n"
    "- a green pepper, chopped\n"
    "- a handful of black olives\n"
    "- 200 grams of feta cheese\n"
    "- olive oil and dried oregano\n"
    "Put the vegetables in a large bowl, add the olives, and place the feta on "
    "top. Pour over a little olive oil, sprinkle with oregano, and serve straight "
    "away with fresh bread.",
    "Reasons to learn a second language:\n"
    "1. It makes travelling easier and more fun.\n"
    "2. It helps you understand other cultures.\n"
    "3. It can lead to better jobs.\n"
    "4. It keeps your brain active and healthy.\n"
    "5. It improves your memory and concentration.\n"
    "6. It lets you enjoy books and films in their original language.\n"
    "7. It helps you understand your own language better.\n"
    "8. It gives you a chance to meet new people.",
    "Weekly cleaning plan:\n"
    "- Monday: vacuum the living room and hallway\n"
    "- Tuesday: clean the bathroom\n"
    "- Wednesday: change the bed sheets\n"
    "- Thursday: wipe the kitchen cupboards and clean the oven\n"
    "- Friday: dust the shelves and furniture\n"
    "- Saturday: wash the floors and take out the recycling\n"
    "- Sunday: rest\n"
    "Doing a little every day is much easier than cleaning the whole house at "
    "once.",
    "The main parts of a plant and what they do:\n"
    "- Roots take in water and minerals from the soil and hold the plant in place.\n"
    "- The stem carries water up to the leaves and supports the plant.\n"
    "- Leaves use sunlight to make food for the plant.\n"
    "- Flowers attract insects and produce seeds.\n"
    "- Fruits protect the seeds and help them spread.\n"
    "- Seeds grow into new plants when conditions are right.",
    "How to prepare for a job interview:\n"
    "1. Read about the company and its products.\n"
    "2. Study the job description carefully.\n"
    "3. Think of examples from your past work.\n"
    "4. Prepare answers to common questions.\n"
    "5. Write down a few questions to ask them.\n"
    "6. Choose clean, smart clothes the night before.\n"
    "7. Plan your journey and arrive ten minutes early.\n"
    "8. Bring a copy of your CV.\n"
    "9. Smile, listen carefully, and take your time.",
    "Easy guacamole\n"
    "Ingredients:\n"
    "- 2 ripe avocados\n"
    "- juice of 1 lime\n"
    "- half a small onion, finely chopped\n"
    "- 1 tomato, chopped\n"
    "- a handful of fresh coriander\n"
    "- salt to taste\n"
    "Method:\n"
    "1. Cut the avocados in half and scoop out the flesh.\n"
    "2. Mash with a fork, leaving a few lumps.\n"
    "3. Stir in the lime juice, onion, tomato, and coriander.\n"
    "4. Season with salt and serve with tortilla chips.",
)

_INSTRUCTIONS: tuple[str, ...] = (
    "To change a flat tyre, first park the car on flat, solid ground away from "
    "traffic and turn on your hazard lights. Loosen the wheel nuts slightly "
    "while the wheel is still on the ground. Then raise the car with the jack "
    "until the tyre is off the ground. Remove the nuts and the wheel, fit the "
    "spare wheel, and tighten the nuts by hand. Lower the car and tighten the "
    "nuts fully in a star pattern.",
    "To make a good cup of tea, start by boiling fresh water. Warm the teapot by "
    "rinsing it with a little hot water, then pour that water away. Put one tea "
    "bag or one teaspoon of loose tea per person into the pot. Pour the boiling "
    "water over the tea and let it brew for three to five minutes. Pour it into "
    "cups and add milk or sugar if you like.",
    "To plant a tree, dig a hole that is twice as wide as the root ball and about "
    "as deep. Loosen the soil at the bottom of the hole. Take the tree out of its "
    "pot and gently spread the roots. Place the tree in the hole so that the top "
    "of the root ball is level with the ground. Fill the hole with soil, press it "
    "down firmly, and water the tree well.",
    "Before you start painting a room, move the furniture to the middle and cover "
    "it with old sheets. Cover the floor as well. Fill any holes in the walls and "
    "let the filler dry, then sand it smooth. Put tape along the edges of the "
    "windows and doors. Paint the edges with a brush first, then use a roller for "
    "the large areas. Let the first coat dry before you add a second.",
    "To back up your photos, first connect an external hard drive to your "
    "computer. Open the folder where your photos are stored and select all of "
    "them. Copy the files and paste them into a new folder on the external drive. "
    "When the copying has finished, open a few of the photos from the drive to "
    "check that they work. Repeat this every month, or set up automatic backups.",
    "To cook perfect rice, rinse one cup of rice in cold water until the water "
    "runs clear. Put the rice in a pan with one and a half cups of water and a "
    "pinch of salt. Bring it to the boil, then turn the heat down as low as it "
    "will go and cover the pan with a lid. Cook for fifteen minutes without "
    "lifting the lid. Leave it to rest for five minutes, then fluff it with a fork.",
    "If you want to start running, begin slowly. For the first week, go out three "
    "times and alternate one minute of running with two minutes of walking for "
    "twenty minutes. Each week, run a little more and walk a little less. Wear "
    "comfortable shoes that support your feet, and drink water before and after "
    "you run. Do not worry about speed; what matters most is going out regularly.",
    "To write a good email, start with a clear subject line that tells the reader "
    "what the message is about. Greet the person politely. Explain the main point "
    "in the first sentence or two, and keep the rest of the message short and "
    "simple. If you need the reader to do something, say exactly what and by "
    "when. End with a friendly closing, and read the email again before you "
    "send it.",
    "To clean a laptop keyboard, first turn the computer off and unplug it. Turn "
    "the laptop upside down and gently shake it to remove crumbs. Use a can of "
    "compressed air to blow dust out from between the keys. Dampen a soft cloth "
    "with a little water or alcohol and wipe the keys carefully. Never pour liquid "
    "directly onto the keyboard. Let everything dry completely before you turn "
    "the laptop back on.",
    "To wrap a present neatly, measure enough paper to go all the way around the "
    "box with a little overlap. Place the box face down in the middle of the "
    "paper. Fold one long side over the box and tape it down, then fold the other "
    "side over it and tape again. At each end, fold the sides in, then fold the "
    "top and bottom flaps up and tape them. Finish with a ribbon and a card.",
    "To learn new words in a foreign language, write each word on one side of a "
    "small card and its meaning on the other. Study a few cards every day instead "
    "of many cards once a week. Say the words out loud and try to use them in "
    "your own sentences. Put the cards you know well at the back of the pile and "
    "practise the difficult ones more often.",
    "To set up a new phone, first charge the battery and turn the phone on. "
    "Choose your language and connect to your home wireless network. Sign in to "
    "your account so that your contacts and apps can be restored. Set a screen "
    "lock, such as a PIN or a fingerprint, to keep your information safe. "
    "Finally, check for system updates and install any that are available.",
    "To make your houseplants happy, put them in a place with the right amount "
    "of light for their type. Water them when the top of the soil feels dry, and "
    "make sure the pot has holes so that extra water can drain away. Feed them "
    "with plant food once a month in spring and summer. Wipe the dust off large "
    "leaves, and move the plants to bigger pots when their roots fill the old ones.",
    "When you give a short talk, prepare three main points and no more. Start by "
    "telling the audience what you will talk about, then cover each point in "
    "turn with a clear example. Speak slowly and look at the people in the room, "
    "not at your notes. Practise the talk out loud several times beforehand. At "
    "the end, sum up your main points and thank the audience for listening.",
    "To iron a shirt, set the iron to the right temperature for the fabric. Start "
    "with the collar, ironing both sides from the points toward the middle. Next, "
    "iron the cuffs and then the sleeves. Iron the back of the shirt, and then "
    "each front panel, working carefully around the buttons. Hang the shirt on a "
    "hanger straight away so that it does not crease again.",
    "To boil an egg, put the egg in a small pan and cover it with cold water. "
    "Bring the water to the boil over a medium heat. Once it is boiling, lower the "
    "heat and cook for four minutes for a soft egg or eight minutes for a hard "
    "one. Lift the egg out with a spoon and put it in cold water for a minute "
    "before you peel it.",
    "To keep your computer safe, install updates as soon as they are available. "
    "Use a different strong password for every important account, and store them "
    "in a password manager. Turn on two-step verification wherever you can. Do "
    "not open attachments or click links in emails you were not expecting. Back "
    "up your important files regularly, so you can recover them if something "
    "goes wrong.",
    "To make a budget, first write down how much money you earn each month after "
    "tax. Then list all your regular costs, such as rent, food, transport, and "
    "bills. Subtract your costs from your income to see how much is left. Decide "
    "how much of that you want to save, and how much you can spend on other "
    "things. Check your spending every week to make sure you stay within the plan.",
    "To unblock a kitchen sink, first remove any standing water with a cup. Pour "
    "a kettle of hot water slowly down the drain. If that does not work, use a "
    "plunger: cover the drain completely, push down firmly, and pull up sharply "
    "several times. You can also try pouring half a cup of baking soda into the "
    "drain, followed by a cup of vinegar. Wait fifteen minutes, then rinse with "
    "hot water.",
    "To make a simple paper aeroplane, take a sheet of paper and fold it in half "
    "along its length, then open it again. Fold the two top corners down to the "
    "centre line to make a point. Fold the new slanted edges down to the centre "
    "line again. Fold the plane in half along the original crease, then fold each "
    "side down to make the wings. Hold it underneath and throw it gently forward.",
    "To prepare for an exam, start studying at least two weeks before the date. "
    "Make a timetable that covers every topic, and leave time at the end for "
    "revision. Study in short sessions of about forty minutes with breaks in "
    "between. Test yourself with old papers and practice questions. Sleep well "
    "the night before the exam, eat a good breakfast, and arrive early.",
    "To sharpen a kitchen knife with a whetstone, first soak the stone in water "
    "for ten minutes. Place it on a damp cloth so it does not slide. Hold the "
    "knife at a small angle against the stone and push it forward, moving from "
    "the heel of the blade to the tip. Repeat about ten times on each side. "
    "Finally, rinse and dry the knife and the stone.",
    "To take a good photograph with your phone, clean the lens first with a soft "
    "cloth. Turn on the grid in the camera settings and place the main subject "
    "along one of the lines rather than in the exact centre. Use natural light "
    "whenever you can and avoid the flash. Hold the phone steady with both hands, "
    "tap the screen to focus, and take several shots so you can choose the best one.",
    "To start a compost heap, choose a shady corner of the garden and mark out "
    "a space about one metre square. Add a layer of twigs at the bottom so air "
    "can get in. Then add green waste, such as vegetable peelings and grass "
    "cuttings, mixed with brown waste, such as dry leaves and cardboard. Turn the "
    "heap with a fork every few weeks. After six to twelve months you will have "
    "rich compost.",
    "To make a video call, open the app and sign in to your account. Find the "
    "person you want to call in your contact list and press the camera button. "
    "Before the call starts, check that your microphone and camera are switched "
    "on. Sit in a quiet place with light in front of you rather than behind you. "
    "When you have finished, press the red button to end the call.",
)

_SCIENCE: tuple[str, ...] = (
    "Plants make their own food through a process called photosynthesis. Inside "
    "their leaves, a green substance called chlorophyll captures energy from "
    "sunlight. The plant uses this energy to turn water from the soil and carbon "
    "dioxide from the air into sugar, which it uses to grow. Oxygen is released "
    "as a by-product. Almost all life on Earth depends on this process, either "
    "directly or indirectly.",
    "Water moves around the planet in a never-ending cycle. The sun heats water "
    "in oceans, lakes, and rivers, and some of it evaporates into the air as "
    "water vapour. As the vapour rises, it cools and condenses into tiny droplets "
    "that form clouds. When the droplets grow heavy enough, they fall back to the "
    "ground as rain or snow. The water then flows into rivers and back to the sea.",
    "The heart is a muscle about the size of a closed fist. It pumps blood around "
    "the body through a network of blood vessels. Blood carries oxygen from the "
    "lungs to every cell and takes carbon dioxide back to the lungs, where it is "
    "breathed out. An adult heart beats about seventy times a minute when the "
    "body is at rest, which adds up to more than one hundred thousand beats a day.",
    "Earth takes about 365 days to travel once around the sun, which is why a year "
    "has that many days. At the same time, the planet spins on its own axis once "
    "every twenty-four hours, giving us day and night. The seasons happen because "
    "Earth's axis is tilted. For part of the year, one half of the planet leans "
    "toward the sun and receives more direct sunlight, so it has summer.",
    "Everything around us is made of atoms. An atom has a small, heavy centre "
    "called the nucleus, which contains protons and neutrons. Around the nucleus "
    "move much lighter particles called electrons. The number of protons decides "
    "which element the atom belongs to: hydrogen has one proton, carbon has six, "
    "and oxygen has eight. Atoms join together to form molecules, such as water.",
    "Sound is a wave that travels through the air as tiny changes in pressure. "
    "When a guitar string vibrates, it pushes the air around it back and forth, "
    "and these movements spread out in all directions. When they reach our ears, "
    "they make the eardrum vibrate, and the brain turns these vibrations into the "
    "sounds we hear. Sound travels at about 340 metres per second in air.",
    "The moon does not make its own light. What we see is sunlight reflected from "
    "its surface. As the moon travels around Earth once every month or so, we see "
    "different amounts of its sunlit side. This is why the moon seems to change "
    "shape, from a thin crescent to a full circle and back again. These changing "
    "shapes are called the phases of the moon.",
    "Vaccines help the body protect itself against disease. A vaccine contains a "
    "weakened or harmless part of a germ, or instructions for making one of its "
    "proteins. The immune system learns to recognise it and builds defences. If "
    "the real germ enters the body later, the immune system remembers it and can "
    "fight it off quickly, often before the person feels ill at all.",
    "Volcanoes form where molten rock from deep inside the Earth finds a way to "
    "the surface. This molten rock is called magma while it is underground and "
    "lava once it erupts. Many volcanoes are found along the edges of the large "
    "plates that make up the Earth's crust. When pressure builds up beneath the "
    "surface, gas and magma can burst out in an eruption.",
    "Light travels faster than anything else in the universe, at about three "
    "hundred thousand kilometres per second. Even so, the light from the sun "
    "takes about eight minutes to reach Earth. The light from distant stars can "
    "take thousands or even millions of years to arrive, which means that when we "
    "look at the night sky, we are seeing the stars as they were long ago.",
    "Bees play an important role in nature. As they move from flower to flower "
    "collecting nectar, they carry pollen with them. This pollen helps plants "
    "produce fruit and seeds. Many of the crops that people eat, including apples, "
    "almonds, and tomatoes, depend on insects like bees for pollination. Without "
    "them, our food supply would be much less varied.",
    "Gravity is the force that pulls objects toward each other. The more mass an "
    "object has, the stronger its pull. Earth's gravity keeps us on the ground "
    "and holds the moon in its orbit. The sun's gravity keeps the planets moving "
    "around it. On the moon, gravity is only about one sixth as strong as on "
    "Earth, so astronauts there can jump much higher.",
    "The human brain contains around eighty-six billion nerve cells, called "
    "neurons. Each neuron can connect to thousands of others, forming a huge "
    "network that passes signals using electricity and chemicals. Different parts "
    "of the brain are responsible for different tasks, such as vision, movement, "
    "memory, and language. Although the brain is only about two percent of the "
    "body's weight, it uses about a fifth of its energy.",
    "Rainbows appear when sunlight shines through drops of water in the air. "
    "Sunlight looks white, but it is really a mixture of many colours. When light "
    "enters a raindrop, it bends, and each colour bends by a slightly different "
    "amount. The colours spread out and are reflected back toward us. That is why "
    "we see a band of red, orange, yellow, green, blue, and violet.",
    "Ice floats on water because it is less dense than liquid water. When water "
    "freezes, its molecules arrange themselves in an open pattern that takes up "
    "more space. This is unusual, since most substances become denser when they "
    "turn solid. Because ice floats, lakes freeze from the top down, and the "
    "water underneath stays liquid, allowing fish to survive the winter.",
    "Bacteria are tiny living things made of a single cell. They are found almost "
    "everywhere: in soil, in water, and inside our bodies. Most bacteria are "
    "harmless, and many are helpful. Bacteria in our gut help us digest food, and "
    "bacteria in the soil break down dead plants and animals. Only a small number "
    "of types cause disease, and many of those can be treated with antibiotics.",
    "Metals conduct electricity well because some of their electrons are free to "
    "move. When a battery is connected to a copper wire, these electrons flow "
    "along the wire, creating an electric current. Materials such as rubber and "
    "plastic hold their electrons tightly, so they do not conduct electricity. "
    "That is why electric cables are made of copper covered with plastic.",
    "The greenhouse effect keeps our planet warm enough for life. Sunlight passes "
    "through the atmosphere and warms the ground. The warm ground gives off heat, "
    "and gases such as carbon dioxide and water vapour trap some of this heat "
    "before it escapes into space. Burning coal, oil, and gas adds more carbon "
    "dioxide to the air, which traps more heat and warms the climate.",
    "Fossils are the remains or traces of plants and animals that lived long ago. "
    "Most fossils form when a living thing is buried quickly in mud or sand. Over "
    "millions of years, the layers of sediment turn into rock, and minerals "
    "slowly replace the bones or shells. By studying fossils, scientists can "
    "learn what ancient creatures looked like and how life on Earth has changed.",
    "Our bodies need several kinds of food to stay healthy. Carbohydrates, found "
    "in bread, rice, and potatoes, give us energy. Proteins, found in meat, fish, "
    "beans, and eggs, help build and repair muscles. Fats store energy and help "
    "the body absorb some vitamins. Fruit and vegetables provide vitamins, "
    "minerals, and fibre, which keep the body working well.",
    "Magnets have two ends, called the north pole and the south pole. Opposite "
    "poles attract each other, while like poles push each other away. Earth "
    "itself behaves like a giant magnet, which is why the needle of a compass "
    "always points north. Magnets are used in many everyday things, from fridge "
    "doors and speakers to electric motors and computer hard drives.",
    "Clouds come in many shapes and sizes. High, thin, wispy clouds are called "
    "cirrus clouds and are made of ice crystals. Puffy white clouds that look like "
    "cotton wool are called cumulus clouds, and they usually mean fair weather. "
    "Flat grey clouds that cover the whole sky are called stratus clouds. Tall, "
    "dark cumulonimbus clouds bring heavy rain and thunderstorms.",
    "Sleep is essential for both body and mind. While we sleep, the body repairs "
    "its tissues and the brain sorts and stores the memories of the day. Adults "
    "usually need between seven and nine hours of sleep each night, and children "
    "need even more. People who do not get enough sleep find it harder to "
    "concentrate, and over time their health can suffer.",
    "Earthquakes happen when large pieces of the Earth's crust, called tectonic "
    "plates, suddenly slip past each other. The plates move very slowly, only a "
    "few centimetres a year, but stress builds up where they meet. When the rock "
    "finally breaks, energy is released as waves that shake the ground. "
    "Scientists measure the strength of earthquakes with instruments called "
    "seismometers.",
    "DNA is the molecule that carries the instructions for building and running a "
    "living thing. It is shaped like a twisted ladder, known as a double helix. "
    "The order of four chemical letters along the ladder forms a code. Sections "
    "of this code, called genes, tell cells how to make proteins. Children "
    "inherit half of their DNA from each parent, which is why they resemble both.",
)

_QA: tuple[str, ...] = (
    "Question: Why is the sky blue?\n"
    "Answer: Sunlight is made of many colours. When it passes through the "
    "atmosphere, it hits tiny molecules of gas in the air. These molecules "
    "scatter blue light much more than red or yellow light, because blue light "
    "has a shorter wavelength. The scattered blue light reaches our eyes from "
    "every part of the sky, so the sky looks blue during the day.",
    "Question: How many days are there in a leap year?\n"
    "Answer: A leap year has 366 days instead of the usual 365. The extra day is "
    "added to the end of February, which then has 29 days. Leap years happen "
    "almost every four years, because it takes Earth about 365 and a quarter days "
    "to travel around the sun. Adding a day every four years keeps the calendar "
    "in step with the seasons.",
    "Q: What is the capital city of France?\n"
    "A: The capital of France is Paris. It is the largest city in the country and "
    "sits on the river Seine in the north of France. Paris is famous for its "
    "museums, its cafes, and landmarks such as the Eiffel Tower and the cathedral "
    "of Notre-Dame. Millions of tourists visit the city every year.",
    "Question: Why do we have to sleep?\n"
    "Answer: Scientists are still studying exactly why we sleep, but they know it "
    "is very important. During sleep, the body repairs muscles and other tissues, "
    "and the brain stores memories and clears away waste. People who do not sleep "
    "enough find it hard to think clearly, feel more stressed, and get ill more "
    "often.",
    "Q: How do I convert degrees Celsius to degrees Fahrenheit?\n"
    "A: Multiply the temperature in Celsius by nine, divide by five, and then add "
    "thirty-two. For example, 20 degrees Celsius is 20 x 9 / 5 + 32 = 68 degrees "
    "Fahrenheit. Water freezes at 0 degrees Celsius, which is 32 degrees "
    "Fahrenheit, and boils at 100 degrees Celsius, which is 212 degrees Fahrenheit.",
    "Question: What is the difference between weather and climate?\n"
    "Answer: Weather describes the conditions in the atmosphere at a particular "
    "time and place, such as whether it is sunny, rainy, or windy today. Climate "
    "describes the average weather in a region over a long period, usually thirty "
    "years or more. In short, weather is what you get on a given day, and climate "
    "is what you expect.",
    "Q: How long should I boil pasta?\n"
    "A: Most dried pasta needs between eight and twelve minutes in a large pan of "
    "boiling, salted water. The exact time is usually printed on the packet. The "
    "best way to check is to taste a piece a minute or two before the time is up. "
    "It should be soft but still slightly firm in the middle. Fresh pasta cooks "
    "much faster, often in two or three minutes.",
    "Question: Who wrote the play Romeo and Juliet?\n"
    "Answer: Romeo and Juliet was written by William Shakespeare, the English "
    "playwright and poet, in the 1590s. It tells the story of two young lovers "
    "from rival families in the Italian city of Verona. The play is one of "
    "Shakespeare's most famous works and is still performed all over the world "
    "today.",
    "Q: Why do leaves change colour in autumn?\n"
    "A: Leaves are green because they contain chlorophyll, which plants use to "
    "make food from sunlight. In autumn, the days get shorter and cooler, and "
    "trees stop making chlorophyll. As the green colour fades, other colours that "
    "were hidden in the leaf, such as yellow and orange, become visible. Some "
    "trees also produce red colours at this time of year.",
    "Question: What does a computer's memory do?\n"
    "Answer: A computer's main memory, often called RAM, holds the programs and "
    "data that the computer is using right now. It is very fast, so the processor "
    "can read and write it quickly. However, it loses its contents when the power "
    "is turned off. Files that need to be kept are saved to storage, such as a "
    "hard drive or a solid state drive.",
    "Q: How much water should an adult drink each day?\n"
    "A: A common guide is about two litres a day, or roughly eight glasses, but "
    "the right amount depends on your size, how active you are, and the weather. "
    "Food also provides some water. A simple sign that you are drinking enough is "
    "that you rarely feel thirsty and your urine is pale yellow.",
    "Question: What is the largest ocean on Earth?\n"
    "Answer: The Pacific Ocean is the largest and deepest ocean on Earth. It "
    "stretches from the Arctic in the north to the Southern Ocean in the south, "
    "and from Asia and Australia in the west to the Americas in the east. It "
    "covers about a third of the planet's surface, more than all the land put "
    "together.",
    "Q: How do I stop my bread from going stale so quickly?\n"
    "A: Keep bread in a cool, dry place, such as a bread bin or a paper bag, "
    "rather than in the fridge, where it goes stale faster. If you will not eat "
    "a loaf within two or three days, slice it and freeze it. You can toast the "
    "slices straight from the freezer whenever you need them.",
    "Question: Why does the moon look bigger near the horizon?\n"
    "Answer: The moon is not really bigger when it is low in the sky. Its size in "
    "photographs stays almost exactly the same. The effect is an illusion created "
    "by the brain. When the moon is near the horizon, we see it next to trees, "
    "buildings, and hills, and the brain judges it to be larger than when it is "
    "high in an empty sky.",
    "Q: What is the difference between a virus and bacteria?\n"
    "A: Bacteria are single living cells that can grow and divide on their own. "
    "Viruses are much smaller and cannot reproduce by themselves; they must enter "
    "the cells of another living thing and use them to make copies. Antibiotics "
    "can kill many bacteria, but they do not work against viruses.",
    "Question: How many players are there in a football team?\n"
    "Answer: In association football, also called soccer, each team has eleven "
    "players on the field at a time, including one goalkeeper. Teams can also "
    "use a number of substitutes during a match. In American football, each team "
    "also has eleven players on the field, but the game and its rules are very "
    "different.",
    "Q: What causes the tides?\n"
    "A: Tides are caused mainly by the pull of the moon's gravity on the oceans. "
    "The moon pulls the water on the side of Earth closest to it, creating a "
    "bulge, and a second bulge forms on the opposite side. As Earth turns, most "
    "coasts pass through both bulges each day, so they usually have two high "
    "tides and two low tides.",
    "Question: Is a tomato a fruit or a vegetable?\n"
    "Answer: Botanically, a tomato is a fruit, because it grows from the flower "
    "of the plant and contains seeds. In the kitchen, however, it is usually "
    "treated as a vegetable, because it is savoury rather than sweet and is used "
    "in salads, sauces, and main dishes. Both answers are correct, depending on "
    "whether you ask a scientist or a cook.",
    "Q: How can I improve my handwriting?\n"
    "A: Start by holding the pen loosely and sitting up straight with your paper "
    "at a comfortable angle. Write slowly at first, paying attention to the shape "
    "and size of each letter. Practise for ten minutes a day by copying a short "
    "passage. Keep the spaces between words even, and your writing will become "
    "neater over a few weeks.",
    "Question: Why do cats purr?\n"
    "Answer: Cats often purr when they are relaxed and happy, for example when "
    "they are being stroked. However, they also purr when they are hungry, "
    "nervous, or unwell, so purring is not always a sign of contentment. Some "
    "scientists believe purring helps cats calm themselves and may even help "
    "their bones and muscles heal.",
    "Q: What is the speed limit on most motorways in the United Kingdom?\n"
    "A: The national speed limit for cars on motorways in the United Kingdom is "
    "seventy miles per hour, which is about one hundred and twelve kilometres per "
    "hour. Lower limits can apply during road works or bad weather, and they are "
    "shown on signs above the road. Lorries and cars towing trailers have lower "
    "limits.",
    "Question: How do airplanes stay in the air?\n"
    "Answer: An airplane's wings are shaped and angled so that the air flowing "
    "over and under them is pushed downward. In return, the air pushes the wings "
    "up, which creates a force called lift. The engines move the plane forward "
    "fast enough for the wings to produce more lift than the weight of the plane, "
    "so it rises and stays in the air.",
    "Q: How often should I water a cactus?\n"
    "A: Cacti store water in their thick stems, so they need much less water than "
    "most plants. In spring and summer, water a cactus about once every two weeks, "
    "and let the soil dry out completely between waterings. In winter, water it "
    "only once a month or even less. Too much water is the most common reason "
    "that cacti die.",
    "Question: What is the tallest mountain in the world?\n"
    "Answer: Mount Everest, on the border between Nepal and China, is the tallest "
    "mountain above sea level, at about 8849 metres. The first confirmed climb to "
    "the top was made in 1953 by Edmund Hillary and Tenzing Norgay. Today "
    "hundreds of climbers try to reach the summit every year, usually in the "
    "spring.",
    "Q: Why should I warm up before exercise?\n"
    "A: Warming up slowly raises your heart rate and sends more blood to your "
    "muscles. Warm muscles are more flexible and less likely to be injured. A "
    "good warm-up lasts five to ten minutes and includes gentle movements such as "
    "walking, light jogging, and swinging your arms and legs. It also helps you "
    "prepare mentally for the workout.",
)

BUILTIN_SNIPPETS: tuple[tuple[str, str], ...] = (
    tuple(("prose", text) for text in _PROSE)
    + tuple(("news", text) for text in _NEWS)
    + tuple(("dialogue", text) for text in _DIALOGUE)
    + tuple(("code", text) for text in _CODE)
    + tuple(("math", text) for text in _MATH)
    + tuple(("list", text) for text in _LIST)
    + tuple(("instructions", text) for text in _INSTRUCTIONS)
    + tuple(("science", text) for text in _SCIENCE)
    + tuple(("qa", text) for text in _QA)
)
