// The English text the demo vocabulary is trained on (see vocab.h: DemoVocab). Written for
// Tandem; changing it changes every dummy model's tokenizer.
#include "model/bpe_trainer.h"

namespace tandem::model {

std::string_view DemoCorpusText() {
  return R"corpus(The river runs past the old mill at the edge of the town, and in the morning the water is the colour of slate. People walk their dogs along the path, stop at the bakery for bread, and talk about the weather, the price of coffee, and the news from the city. Nobody is in a hurry before eight o'clock.

A server that answers questions for many people at once has a different kind of morning. Requests arrive in bursts: a few at first, then hundreds in a second, then almost none. Each request carries a prompt, and each prompt must be read before the first word of the answer can be written. Reading is fast when it is done in large batches; writing is slow because every new word depends on the one before it. That is why the two kinds of work are often kept apart, on different machines, with the memory of the prompt handed from one to the other.

When you plan a garden, you think about light, water and soil. Tomatoes want sun for most of the day. Lettuce prefers shade in the afternoon and grows quickly in spring. Beans climb anything you give them, so a fence or a row of sticks works well. Keep a notebook: write down what you planted, when you planted it, and what happened. After two or three years the notebook is worth more than any book about gardening.

Numbers tell their own stories. In 1969 people walked on the moon; in 1989 a wall came down; in 2007 a telephone learned to browse the web. A kilometre is 1000 metres, a mile is about 1.609 kilometres, and a marathon is 42.195 kilometres long. The year has 365 days, or 366 in a leap year, and a day has 86400 seconds.

Here is a small function that adds the numbers in a list:

def total(values):
    result = 0
    for value in values:
        result += value
    return result

And the same idea in C++:

int Total(const std::vector<int>& values) {
  int result = 0;
  for (int value : values) result += value;
  return result;
}

Questions and answers are the heart of a conversation. What time is it? It is half past three. Where are you going? To the station, to catch the train to the coast. Why did the train stop? There was a tree on the line after the storm last night. How long will it take to clear? The driver thinks about an hour, maybe less.

The library on the hill opened in the spring of its hundredth year. Its reading room is long and quiet, with tall windows on both sides and green lamps on every table. Students come to study, old men come to read the newspapers, and children come on Saturday mornings to hear stories. The librarian knows the name of every regular visitor and the books they like best.

Learning a language takes patience. First you learn to say hello, thank you, please and goodbye. Then you learn to count, to ask for directions, and to order food. After that the words come more slowly, and you begin to notice how sentences are built: where the verb goes, how questions are formed, which words change when there are many of something instead of one.

Cooking for friends is simple if you keep it simple. Choose one dish you know well, make plenty of it, and serve it with good bread and a salad. Open the windows, put on some music, and let people help. The best evenings are rarely the ones with the most elaborate food; they are the ones where everyone stays at the table long after the plates are empty.

A model that predicts text does not understand the world the way a person does, but it has read a great deal. Given the beginning of a sentence, it assigns a probability to every possible next token, picks one, and repeats. Temperature controls how adventurous the choice is: at zero it always takes the most likely token, at higher values it takes more risks. Long answers need memory for every token already written, and that memory grows with the length of the conversation.

The weather report for tomorrow: cloudy in the morning with a chance of light rain, clearing in the afternoon. Temperatures between 12 and 18 degrees. Winds from the west at 15 to 20 kilometres per hour. Sunrise at 6:42, sunset at 19:58. The outlook for the weekend is dry and warmer.

Every system fails sometimes. Disks fill up, networks drop packets, processes run out of memory, and clocks drift. Good software expects this. It checks what it reads, says clearly what went wrong, retries what can be retried, and refuses what cannot be done instead of guessing. When something breaks at three in the morning, a clear error message is the kindest thing a program can offer the person who has to fix it.

She opened the letter slowly. It was from her brother, who had moved to the mountains ten years ago and wrote only at the new year. "The snow came early," he wrote. "The road was closed for a week, but we had wood and flour and the radio. I have been reading the books you sent. Come in the summer, when the meadows are full of flowers and the evenings are long."

Tables, lists and schedules keep a busy week in order. Monday: meeting at 9:30, lunch with the team, review the design in the afternoon. Tuesday: write the tests, fix the bug in the parser, answer the email about the release. Wednesday: deploy to the staging cluster, measure the latency, compare it with last week. Thursday and Friday: whatever the first three days did not finish.
)corpus";
}

}  // namespace tandem::model
